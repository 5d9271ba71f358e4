//! The properties of a `READY` command (RFC 23 metadata).

use crate::HandshakeError;

/// The `Socket-Type` property of a `READY` command's data, `None` when the
/// peer sent none (RFC 37 says it SHOULD; libzmq accepts its absence, and
/// so do we: the port decides the peer's role then).
///
/// # Errors
/// [`HandshakeError::BadReady`] when the properties are malformed.
pub fn socket_type(props: &[u8]) -> Result<Option<String>, HandshakeError> {
    Ok(property(props, "Socket-Type")?.map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// The value of the property `name` (compared without regard to ASCII
/// case, as RFC 23 says) in a `READY` command's data: `Identity` (the
/// routing id a DEALER or REQ peer asks a ROUTER for), `Socket-Type`, …;
/// the last one when a name repeats, `None` when absent.
///
/// # Errors
/// [`HandshakeError::BadReady`] when the properties are malformed.
pub fn property<'a>(mut props: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, HandshakeError> {
    let mut found = None;
    while let Some((&n, rest)) = props.split_first() {
        let n = usize::from(n);
        let key = rest.get(..n).ok_or(HandshakeError::BadReady(
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
        if key.eq_ignore_ascii_case(name.as_bytes()) {
            found = Some(value);
        }
        props = rest.get(value_at + len..).unwrap_or_default();
    }
    Ok(found)
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

    #[test]
    fn identity_property() {
        let props = b"\x0bSocket-Type\x00\x00\x00\x06DEALER\x08Identity\x00\x00\x00\x02w1";
        assert_eq!(property(props, "identity"), Ok(Some(&b"w1"[..])));
        assert_eq!(property(props, "Routing-Id"), Ok(None));
        assert_eq!(
            property(b"\x08Identity\x00\x00\x00\x00", "Identity"),
            Ok(Some(&b""[..]))
        );
        assert!(property(b"\x08Identity\x00\x00\x00\x05ab", "Identity").is_err());
    }
}
