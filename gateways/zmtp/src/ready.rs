//! The properties of a `READY` command (RFC 23 metadata).

use crate::HandshakeError;

/// The `Socket-Type` property of a `READY` command's data, `None` when the
/// peer sent none (RFC 37 says it SHOULD; libzmq accepts its absence, and
/// so do we: the port decides the peer's role then).
///
/// # Errors
/// [`HandshakeError::BadReady`] when the properties are malformed.
pub fn socket_type(mut props: &[u8]) -> Result<Option<String>, HandshakeError> {
    let mut socket_type = None;
    while let Some((&n, rest)) = props.split_first() {
        let n = usize::from(n);
        let name = rest.get(..n).ok_or(HandshakeError::BadReady(
            "property name runs past the frame",
        ))?;
        let len = rest
            .get(n..n + 4)
            .ok_or(HandshakeError::BadReady("property length missing"))?;
        let len = <[u8; 4]>::try_from(len)
            .map_err(|_| HandshakeError::BadReady("property length missing"))?;
        let len = u32::from_be_bytes(len) as usize;
        let value_at = n + 4;
        let value =
            rest.get(value_at..value_at.saturating_add(len))
                .ok_or(HandshakeError::BadReady(
                    "property value runs past the frame",
                ))?;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            socket_type = Some(String::from_utf8_lossy(value).into_owned());
        }
        props = rest.get(value_at + len..).unwrap_or_default();
    }
    Ok(socket_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_type_optional() {
        assert_eq!(socket_type(b""), Ok(None));
        assert_eq!(socket_type(b"\x08Identity\x00\x00\x00\x00"), Ok(None));
        assert_eq!(
            socket_type(b"\x08Identity\x00\x00\x00\x00\x0bsocket-type\x00\x00\x00\x03SUB"),
            Ok(Some("SUB".into()))
        );
        assert!(socket_type(b"\x0bSocket-Type\x00\x00\x00\x09SUB").is_err());
        assert!(socket_type(b"\x20Socket").is_err());
        assert!(socket_type(b"\x03abc\x00\x00").is_err());
    }
}
