//! PNG metadata without re-encoding: a walk over the chunks, dropping the ones that can carry a
//! location (`eXIf`, and XMP in an `iTXt` chunk).

use super::{MediaError, Photo, unreadable};

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp\0";

/// `bytes` without their `eXIf` and XMP chunks; every other chunk byte for byte, up to `IEND`.
pub(super) fn strip_metadata(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    if !bytes.starts_with(SIGNATURE) {
        return Err(unreadable(Photo::Png, "no PNG signature"));
    }
    let mut out = SIGNATURE.to_vec();
    let mut at = SIGNATURE.len();
    loop {
        let Some(&[a, b, c, d]) = bytes.get(at..at + 4) else {
            return Err(unreadable(Photo::Png, "cut off before IEND"));
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        let end = at
            .checked_add(12)
            .and_then(|n| n.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                unreadable(
                    Photo::Png,
                    format!("a chunk at byte {at} runs past the end"),
                )
            })?;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        let location = kind == b"eXIf" || (kind == b"iTXt" && data.starts_with(XMP_KEYWORD));
        if !location {
            out.extend_from_slice(&bytes[at..end]);
        }
        if kind == b"IEND" {
            return Ok(out);
        }
        at = end;
    }
}
