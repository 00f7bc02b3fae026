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
}

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

/// Prepares `bytes` of type `mime` by `policy`: see the module documentation.
pub fn prepare_attachment(
    bytes: Vec<u8>,
    mime: &str,
    policy: &PhotoPolicy,
) -> Result<Prepared, MediaError> {
    let Some(photo) = Photo::of(mime) else {
        return Ok(unchanged(bytes, mime));
    };
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
