//! The type of a blob, from its first bytes (magic numbers), never from what the phone claims.
//! Only what a case's evidence may be: photos (JPEG, PNG, WebP, HEIC), voice recordings (AMR,
//! M4A, MP3, Ogg) and scanned letters (PDF). Written out rather than taken from a crate: ten
//! fixed prefixes, each tested below, and anything else is refused.

/// Bytes [`sniff`] needs to decide (the ISO-BMFF brand ends at byte 12).
pub const SNIFF_BYTES: usize = 16;

/// The MIME type of `head` (a blob's first bytes), or `None` if it is not an accepted type.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if starts(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        return Some("image/webp");
    }
    if starts(b"#!AMR") {
        return Some("audio/amr");
    }
    if starts(b"OggS") {
        return Some("audio/ogg");
    }
    if starts(b"%PDF-") {
        return Some("application/pdf");
    }
    if let Some(mime) = iso_bmff(head) {
        return Some(mime);
    }
    if starts(b"ID3") || is_mpeg_audio_frame(head) {
        return Some("audio/mpeg");
    }
    None
}

/// HEIC photos and M4A recordings: an ISO-BMFF `ftyp` box whose major brand names the type.
fn iso_bmff(head: &[u8]) -> Option<&'static str> {
    if head.get(4..8) != Some(b"ftyp") {
        return None;
    }
    match head.get(8..12)? {
        b"heic" | b"heix" | b"heim" | b"heis" | b"mif1" | b"msf1" => Some("image/heic"),
        b"M4A " | b"M4B " => Some("audio/mp4"),
        _ => None,
    }
}

/// An MPEG audio frame header without an ID3 tag: 11 sync bits, layer III (what phones record).
fn is_mpeg_audio_frame(head: &[u8]) -> bool {
    match head {
        [0xFF, second, ..] => second & 0xE0 == 0xE0 && (second >> 1) & 0b11 == 0b01,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_types_by_their_magic_bytes() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", "image/jpeg"),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png"),
            (b"RIFF\x24\0\0\0WEBPVP8 ", "image/webp"),
            (b"\0\0\0\x18ftypheic\0\0\0\0", "image/heic"),
            (b"\0\0\0\x1cftypM4A \0\0\0\0", "audio/mp4"),
            (b"#!AMR\n", "audio/amr"),
            (b"ID3\x03\0\0\0\0\0\0", "audio/mpeg"),
            (b"\xFF\xFB\x90\x64", "audio/mpeg"),
            (b"OggS\0\x02", "audio/ogg"),
            (b"%PDF-1.7\n", "application/pdf"),
        ];
        for (head, mime) in cases {
            assert_eq!(sniff(head), Some(*mime), "{head:?}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let cases: &[&[u8]] = &[
            b"",
            b"\xFF",
            b"GIF89a",
            b"MZ\x90\0",
            b"<html>",
            b"\0\0\0\x18ftypisom\0\0\0\0",
            b"RIFF\x24\0\0\0WAVEfmt ",
            b"PK\x03\x04",
            b"\xFF\xF1\x50\x80", // AAC ADTS, not layer III
        ];
        for head in cases {
            assert_eq!(sniff(head), None, "{head:?}");
        }
    }
}
