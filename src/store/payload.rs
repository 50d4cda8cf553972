//! How the store keeps an event's payload: a zstd frame when that is smaller, else the bytes as
//! received, with a [`PayloadCodec`] beside each row saying which (rows written before schema 5
//! are `identity`). Both backends encode with [`encode`] before their write transaction and
//! decode with [`decode`] wherever a payload is read back (the admin API's event view, re-map,
//! the console's previews), so that nothing outside the store ever sees an encoded payload.
//!
//! Why compress: a 7.5 KB GitHub push takes two overflow pages in SQLite and as many WAL frames
//! for each event; level 1 makes it ~1.6 KB, one page (issue 20, figures in the commit). Why
//! the `zstd` crate: the maintained binding of the reference implementation, already built for
//! actix-web's response compression.

use std::borrow::Cow;
use std::cell::RefCell;

use anyhow::Context;

pub use super::state::PayloadCodec;

/// zstd's level for stored payloads. Levels 1–3 give about the same size on webhook JSON
/// (level 3 at most 5% smaller on the fixtures), and 1 is the cheapest to write.
pub const LEVEL: i32 = 1;

/// Shorter payloads are stored as they are: a frame's header and checksum-free overhead eat
/// what little they would save.
const MIN_TO_COMPRESS: usize = 128;

/// A payload as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded<'a> {
    /// How `bytes` are encoded.
    pub codec: PayloadCodec,
    /// The stored bytes.
    pub bytes: Cow<'a, [u8]>,
}

thread_local! {
    /// One compression context per thread that writes (the ingest writer): making one costs
    /// more than compressing a push.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

/// `payload` as it is to be stored: compressed when that makes it smaller, else as it is.
/// Never fails: a payload that cannot be compressed is stored as received.
pub fn encode(payload: &[u8]) -> Encoded<'_> {
    let as_is = || Encoded {
        codec: PayloadCodec::Identity,
        bytes: Cow::Borrowed(payload),
    };
    if payload.len() < MIN_TO_COMPRESS {
        return as_is();
    }
    let compressed = COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        cell.as_mut()?.compress(payload).ok()
    });
    match compressed {
        Some(z) if z.len() < payload.len() => Encoded {
            codec: PayloadCodec::Zstd,
            bytes: Cow::Owned(z),
        },
        _ => as_is(),
    }
}

impl Encoded<'_> {
    /// The same, owning its bytes.
    pub fn into_owned(self) -> Encoded<'static> {
        Encoded {
            codec: self.codec,
            bytes: Cow::Owned(self.bytes.into_owned()),
        }
    }
}

/// `event`'s payload as it is to be stored: as the enqueuer encoded it ahead, on the request's
/// thread (the one store writer then only writes it: issue 20), else encoded now.
pub fn stored(event: &super::NewEvent) -> Encoded<'_> {
    match &event.stored_payload {
        Some(ahead) => Encoded {
            codec: ahead.codec,
            bytes: Cow::Borrowed(&ahead.bytes[..]),
        },
        None => encode(&event.payload),
    }
}

/// The payload stored as `bytes` with the codec named `codec`. An empty payload (dropped after
/// `delivery.keep_payloads`) reads as empty whatever its codec.
///
/// # Errors
/// An unknown codec, or bytes that are not a whole zstd frame (a damaged row).
pub fn decode(codec: &str, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let codec: PayloadCodec = codec.parse().map_err(anyhow::Error::msg)?;
    match codec {
        PayloadCodec::Identity => Ok(bytes),
        PayloadCodec::Zstd if bytes.is_empty() => Ok(bytes),
        PayloadCodec::Zstd => zstd::stream::decode_all(&bytes[..]).with_context(|| {
            format!(
                "its {} stored bytes are not a zstd frame (the row is damaged)",
                bytes.len()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/github/push.4.json");

    #[test]
    fn a_push_is_stored_compressed_and_reads_back_as_it_came() {
        let stored = encode(PUSH);
        assert_eq!(stored.codec, PayloadCodec::Zstd);
        assert!(
            stored.bytes.len() * 3 < PUSH.len(),
            "{}",
            stored.bytes.len()
        );
        let read = decode(stored.codec.as_str(), stored.bytes.into_owned()).unwrap();
        assert_eq!(read, PUSH);
    }

    #[test]
    fn a_tiny_or_empty_payload_is_stored_as_it_is() {
        for payload in [&b""[..], br#"{"n":1}"#] {
            let stored = encode(payload);
            assert_eq!(stored.codec, PayloadCodec::Identity);
            assert_eq!(&stored.bytes[..], payload);
        }
    }

    #[test]
    fn a_payload_that_does_not_shrink_is_stored_as_it_is() {
        // Bytes with no repetition (xorshift): a frame would be longer than they are.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(encode(&noise).codec, PayloadCodec::Identity);
    }

    #[test]
    fn a_dropped_payload_reads_as_empty_whatever_its_codec() {
        assert!(decode("zstd", Vec::new()).unwrap().is_empty());
        assert!(decode("identity", Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_frame_or_an_unknown_codec_is_an_error_that_says_so() {
        let mut stored = encode(PUSH).bytes.into_owned();
        stored.truncate(stored.len() / 2);
        let err = format!("{:#}", decode("zstd", stored).unwrap_err());
        assert!(err.contains("not a zstd frame"), "{err}");
        let err = format!("{:#}", decode("lz4", b"x".to_vec()).unwrap_err());
        assert!(err.contains("unknown payload codec"), "{err}");
    }
}
