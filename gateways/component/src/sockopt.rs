//! Socket options the `zmq` crate does not wrap.

use std::ffi::c_void;

/// Sets `ZMQ_XPUB_NODROP` on an XPUB/PUB socket: when a peer's queue is at
/// its high-water mark, `send` returns `EAGAIN` instead of dropping silently,
/// so every drop can be counted.
#[allow(unsafe_code)]
pub fn set_xpub_nodrop(socket: &mut zmq::Socket, on: bool) -> Result<(), zmq::Error> {
    let value: i32 = i32::from(on);
    // SAFETY: `as_mut_ptr` is the live libzmq socket owned by `socket` (borrowed
    // mutably for the call); the option value is a C int and its exact size is passed.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            zmq_sys::ZMQ_XPUB_NODROP as i32,
            (&value as *const i32).cast::<c_void>(),
            std::mem::size_of::<i32>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Err(zmq::Error::from_raw(errno))
    }
}
