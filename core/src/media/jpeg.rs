//! JPEG metadata without re-encoding: a walk over the segments before the scan, dropping the
//! ones that can carry a location, and the EXIF orientation's own small block.

use super::{MediaError, Photo, unreadable};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
/// EXIF and XMP (each can hold the GPS position).
const APP1: u8 = 0xE1;
/// Photoshop's IPTC block (city, sublocation, GPS in newer writers).
const APP13: u8 = 0xED;

/// `bytes` without their APP1 (EXIF, XMP) and APP13 (IPTC) segments; the scan and every other
/// segment (JFIF, ICC colour profile, Adobe colour transform, tables) byte for byte. An
/// `orientation` other than 1 (upright) is kept in a minimal EXIF block where the first dropped
/// segment stood.
pub(super) fn strip_metadata(bytes: &[u8], orientation: u8) -> Result<Vec<u8>, MediaError> {
    if !bytes.starts_with(&[0xFF, SOI]) {
        return Err(unreadable(Photo::Jpeg, "no start-of-image marker"));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]);
    let mut orientation_kept = orientation == 1;
    let mut at = 2;
    loop {
        let (marker, start) = next_marker(bytes, at)?;
        if marker == EOI || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            out.extend_from_slice(&bytes[start..start + 2]);
            if marker == EOI {
                return Ok(out);
            }
            at = start + 2;
            continue;
        }
        let end = segment_end(bytes, start)?;
        if marker == SOS {
            // The scan and whatever follows it (more scans, tables, EOI) as they are.
            out.extend_from_slice(&bytes[start..]);
            return Ok(out);
        }
        if marker == APP1 || marker == APP13 {
            if !orientation_kept {
                out.extend_from_slice(&orientation_segment(orientation));
                orientation_kept = true;
            }
        } else {
            out.extend_from_slice(&bytes[start..end]);
        }
        at = end;
    }
}

/// The next marker at or after `at` (fill bytes 0xFF skipped): its code and where its 0xFF is.
fn next_marker(bytes: &[u8], at: usize) -> Result<(u8, usize), MediaError> {
    if bytes.get(at) != Some(&0xFF) {
        return Err(unreadable(Photo::Jpeg, format!("no marker at byte {at}")));
    }
    let mut code_at = at + 1;
    while bytes.get(code_at) == Some(&0xFF) {
        code_at += 1;
    }
    match bytes.get(code_at) {
        Some(&code) if code != 0 => Ok((code, code_at - 1)),
        _ => Err(unreadable(Photo::Jpeg, "cut off inside a marker")),
    }
}

/// Where the segment whose marker's 0xFF is at `start` ends (its length counts itself).
fn segment_end(bytes: &[u8], start: usize) -> Result<usize, MediaError> {
    let len = match bytes.get(start + 2..start + 4) {
        Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
        _ => return Err(unreadable(Photo::Jpeg, "cut off inside a segment length")),
    };
    let end = start + 2 + len;
    if len < 2 || end > bytes.len() {
        return Err(unreadable(
            Photo::Jpeg,
            format!("a segment at byte {start} runs past the end"),
        ));
    }
    Ok(end)
}

/// An APP1 EXIF segment holding only the orientation (tag 0x0112), big-endian TIFF.
fn orientation_segment(orientation: u8) -> Vec<u8> {
    let mut tiff = b"MM\0\x2A\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&[0, 1]); // one entry
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]); // no next IFD
    let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
    let len = (payload.len() + 2) as u16;
    [&[0xFF, APP1][..], &len.to_be_bytes(), &payload].concat()
}

/// Sets the orientation in EXIF data (TIFF, as decoders hand it over, with or without the
/// `Exif\0\0` prefix) to upright, for pixels that were turned already. Data it cannot read is
/// left as it is.
pub(super) fn reset_orientation(exif: &mut [u8]) {
    let tiff = match exif.strip_prefix(b"Exif\0\0") {
        Some(_) => &mut exif[6..],
        None => exif,
    };
    let big = match tiff.get(..2) {
        Some(b"MM") => true,
        Some(b"II") => false,
        _ => return,
    };
    let u16_at = |t: &[u8], i: usize| {
        t.get(i..i + 2).map(|b| {
            if big {
                u16::from_be_bytes([b[0], b[1]])
            } else {
                u16::from_le_bytes([b[0], b[1]])
            }
        })
    };
    let u32_at = |t: &[u8], i: usize| {
        t.get(i..i + 4).map(|b| {
            let b = [b[0], b[1], b[2], b[3]];
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        })
    };
    let Some(ifd) = u32_at(tiff, 4).map(|o| o as usize) else {
        return;
    };
    let Some(count) = u16_at(tiff, ifd) else {
        return;
    };
    for entry in (0..usize::from(count)).map(|n| ifd + 2 + 12 * n) {
        if u16_at(tiff, entry) == Some(0x0112) {
            if let Some(value) = tiff.get_mut(entry + 8..entry + 10) {
                value.copy_from_slice(&if big {
                    1u16.to_be_bytes()
                } else {
                    1u16.to_le_bytes()
                });
            }
            return;
        }
    }
}
