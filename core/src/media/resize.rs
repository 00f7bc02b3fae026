//! Decoding (bounded), turning upright, downscaling and re-encoding a photo as JPEG.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader, Limits, RgbImage};

use super::{DECODE_LIMIT_PX, MediaError, Photo, PhotoPolicy, Prepared, jpeg, unreadable};

/// What the decision needs, read from the header without decoding the pixels.
#[derive(Debug)]
pub(super) struct Header {
    pub width: u32,
    pub height: u32,
    /// The EXIF orientation, 1 (upright) to 8.
    pub orientation: u8,
    /// The EXIF data, as the decoder hands it over.
    pub exif: Option<Vec<u8>>,
}

fn decoder(bytes: &[u8], photo: Photo) -> Result<impl ImageDecoder + '_, MediaError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), photo.format());
    let mut limits = Limits::default();
    limits.max_image_width = Some(DECODE_LIMIT_PX);
    limits.max_image_height = Some(DECODE_LIMIT_PX);
    reader.limits(limits);
    reader.into_decoder().map_err(|e| decode_error(photo, e))
}

fn decode_error(photo: Photo, e: image::ImageError) -> MediaError {
    match e {
        image::ImageError::Limits(_) => MediaError::TooLarge,
        e => unreadable(photo, e),
    }
}

pub(super) fn read_header(bytes: &[u8], photo: Photo) -> Result<Header, MediaError> {
    let mut decoder = decoder(bytes, photo)?;
    let (width, height) = decoder.dimensions();
    if width.max(height) > DECODE_LIMIT_PX {
        return Err(MediaError::TooLarge);
    }
    let orientation = decoder.orientation().map_or(1, |o| o.to_exif());
    let exif = decoder.exif_metadata().ok().flatten();
    Ok(Header {
        width,
        height,
        orientation,
        exif,
    })
}

/// The photo upright, fitted within `max_side_px` (aspect kept), as a JPEG at the policy's
/// quality, with `exif` (orientation reset to upright) when given.
pub(super) fn downscale(
    bytes: &[u8],
    photo: Photo,
    policy: &PhotoPolicy,
    exif: Option<Vec<u8>>,
) -> Result<Prepared, MediaError> {
    let mut decoder = decoder(bytes, photo)?;
    let orientation = decoder.orientation().map_err(|e| unreadable(photo, e))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(photo, e))?;
    image.apply_orientation(orientation);
    let side = policy.max_side_px.max(1);
    let small = on_white(image.thumbnail(side, side));
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, policy.jpeg_quality.clamp(1, 100));
    if let Some(mut exif) = exif {
        jpeg::reset_orientation(&mut exif);
        encoder
            .set_exif_metadata(exif)
            .map_err(|e| MediaError::Encode(e.to_string()))?;
    }
    encoder
        .encode_image(&small)
        .map_err(|e| MediaError::Encode(e.to_string()))?;
    Ok(Prepared {
        bytes: out,
        mime: "image/jpeg".into(),
        original: None,
        thumbnail: None,
    })
}

/// RGB for JPEG: transparent pixels over white (as the photo looks on a page), not black.
fn on_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |c: u8| ((u16::from(c) * u16::from(a) + 255 * u16::from(255 - a)) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    })
}
