//! Preparing an attachment by the photo policy before it is hashed and uploaded (issue 10.1):
//! a photo larger than the policy allows is downscaled and re-encoded as JPEG, and the photo's
//! location (EXIF GPS, and XMP, which can carry it too) is removed unless the policy keeps it.
//! Recordings and documents pass through unchanged. Pure: bytes in, bytes out.
//!
//! Decisions a reader may look for:
//! - A JPEG within the size limit is not re-encoded (no generation loss): its metadata segments
//!   are dropped ([`jpeg::strip_metadata`]). The EXIF orientation survives in a minimal EXIF
//!   block of its own, or the photo would show sideways.
//! - A downscaled photo has its orientation applied to the pixels. With `keep_location` its
//!   original EXIF is carried over (orientation reset to upright); without, it has none.
//! - PNGs within the limit lose their `eXIf` chunk and XMP text the same way ([`png`]).
//! - Decoding is bounded ([`DECODE_LIMIT_PX`]): a forged header cannot make the phone allocate
//!   gigabytes.

mod jpeg;
mod png;
mod resize;

use thiserror::Error;

/// The county's photo policy; [`Default`] is the shipped one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoPolicy {
    /// The longest side a photo may keep; a larger one is downscaled to it (aspect kept).
    pub max_side_px: u32,
    /// JPEG quality (1–100) of a re-encoded photo.
    pub jpeg_quality: u8,
    /// Keep the EXIF/XMP location (and other metadata) of the photo.
    pub keep_location: bool,
    /// Keep the original bytes beside a changed photo, in [`Prepared::original`].
    pub keep_original: bool,
    /// The longest side of a photo's thumbnail ([`Prepared::thumbnail`]); 0: none.
    pub thumbnail_side_px: u32,
    /// Phones fetch the thumbnails of their cases' photos after each sync (the photos
    /// themselves only when opened), so lists show them offline.
    pub prefetch_thumbnails: bool,
}

impl Default for PhotoPolicy {
    /// 1600 px at quality 80 keeps a photo legible as evidence at a few hundred KB over a
    /// village's mobile link; the complainant's location is not kept unless asked.
    fn default() -> Self {
        PhotoPolicy {
            max_side_px: 1600,
            jpeg_quality: 80,
            keep_location: false,
            keep_original: false,
            thumbnail_side_px: THUMBNAIL_SIDE_PX,
            prefetch_thumbnails: true,
        }
    }
}

/// An attachment ready to hash and upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub bytes: Vec<u8>,
    /// `image/jpeg` after a re-encode, else the type given.
    pub mime: String,
    /// The bytes given, when the policy keeps originals and they were changed.
    pub original: Option<Vec<u8>>,
    /// A JPEG of the prepared photo fitted within the policy's thumbnail side, when the photo
    /// is larger than that (a smaller photo is its own thumbnail).
    pub thumbnail: Option<Vec<u8>>,
}

/// 320 px: a list row's picture on a phone screen at ~10-20 KB, a few seconds at 50 kbit/s.
pub const THUMBNAIL_SIDE_PX: u32 = 320;

/// JPEG quality of thumbnails: small and only looked at small.
const THUMBNAIL_QUALITY: u8 = 70;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MediaError {
    /// The bytes are not a readable image of the type they are labelled with.
    #[error("not a readable {mime} image: {reason}")]
    Unreadable { mime: String, reason: String },
    /// The image is larger than this phone will decode.
    #[error("the image is over {DECODE_LIMIT_PX} pixels a side; it is not decoded")]
    TooLarge,
    /// Re-encoding the downscaled photo failed.
    #[error("could not encode the downscaled photo: {0}")]
    Encode(String),
}

/// The longest side decoded at all (a 200-megapixel phone photo is 16,320 px wide).
pub const DECODE_LIMIT_PX: u32 = 20_000;

/// The photo kinds this module prepares; anything else passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Photo {
    Jpeg,
    Png,
}

impl Photo {
    fn of(mime: &str) -> Option<Photo> {
        match mime.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" => Some(Photo::Jpeg),
            "image/png" => Some(Photo::Png),
            _ => None,
        }
    }

    fn format(self) -> image::ImageFormat {
        match self {
            Photo::Jpeg => image::ImageFormat::Jpeg,
            Photo::Png => image::ImageFormat::Png,
        }
    }
}

/// Prepares `bytes` of type `mime` by `policy`: see the module documentation. A photo gets its
/// thumbnail made from the prepared bytes.
pub fn prepare_attachment(
    bytes: Vec<u8>,
    mime: &str,
    policy: &PhotoPolicy,
) -> Result<Prepared, MediaError> {
    let Some(photo) = Photo::of(mime) else {
        return Ok(unchanged(bytes, mime));
    };
    let mut prepared = prepare_photo(bytes, mime, photo, policy)?;
    let kind = Photo::of(&prepared.mime).unwrap_or(photo);
    prepared.thumbnail = thumbnail(&prepared.bytes, kind, policy.thumbnail_side_px)?;
    Ok(prepared)
}

/// A JPEG of `bytes` fitted within `side` px, without metadata; `None` for `side` 0 or a photo
/// no larger than that.
fn thumbnail(bytes: &[u8], photo: Photo, side: u32) -> Result<Option<Vec<u8>>, MediaError> {
    let header = resize::read_header(bytes, photo)?;
    if side == 0 || header.width.max(header.height) <= side {
        return Ok(None);
    }
    let policy = PhotoPolicy {
        max_side_px: side,
        jpeg_quality: THUMBNAIL_QUALITY,
        ..PhotoPolicy::default()
    };
    Ok(Some(resize::downscale(bytes, photo, &policy, None)?.bytes))
}

/// The photo downscaled or stripped by `policy` (no thumbnail yet).
fn prepare_photo(
    bytes: Vec<u8>,
    mime: &str,
    photo: Photo,
    policy: &PhotoPolicy,
) -> Result<Prepared, MediaError> {
    let header = resize::read_header(&bytes, photo)?;
    let longest = header.width.max(header.height);
    let prepared = if longest > policy.max_side_px.max(1) {
        let exif = if policy.keep_location {
            header.exif
        } else {
            None
        };
        resize::downscale(&bytes, photo, policy, exif)?
    } else if policy.keep_location {
        return Ok(unchanged(bytes, mime));
    } else {
        let stripped = match photo {
            Photo::Jpeg => jpeg::strip_metadata(&bytes, header.orientation)?,
            Photo::Png => png::strip_metadata(&bytes)?,
        };
        if stripped == bytes {
            return Ok(unchanged(bytes, mime));
        }
        Prepared {
            bytes: stripped,
            mime: mime.to_owned(),
            original: None,
            thumbnail: None,
        }
    };
    Ok(Prepared {
        original: policy.keep_original.then_some(bytes),
        ..prepared
    })
}

fn unchanged(bytes: Vec<u8>, mime: &str) -> Prepared {
    Prepared {
        bytes,
        mime: mime.to_owned(),
        original: None,
        thumbnail: None,
    }
}

fn unreadable(photo: Photo, reason: impl std::fmt::Display) -> MediaError {
    MediaError::Unreadable {
        mime: photo.format().to_mime_type().to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
