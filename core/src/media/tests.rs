use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{ImageDecoder, ImageEncoder, ImageReader, RgbImage, RgbaImage};
use proptest::prelude::*;

use super::*;

/// A photo-like JPEG: smooth gradients (what a camera's sensor gives), `w` × `h`.
fn jpeg_of(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) / 8 % 256) as u8])
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&img, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn png_of(img: &RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            img,
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgba8,
        )
        .unwrap();
    out
}

/// The GPS IFD's datum, a string no pixel data will contain: where it is, the location is.
const GPS_MARK: &[u8] = b"WGS-84";

/// EXIF (little-endian TIFF) with an optional orientation and a GPS IFD (latitude ref, datum).
fn exif(orientation: Option<u8>) -> Vec<u8> {
    let n0: u16 = 1 + u16::from(orientation.is_some());
    let gps_ifd = 8 + 2 + 12 * u32::from(n0) + 4;
    let datum_at = gps_ifd + 2 + 24 + 4;
    let mut t = b"II*\0\x08\0\0\0".to_vec();
    t.extend_from_slice(&n0.to_le_bytes());
    if let Some(o) = orientation {
        t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, o, 0, 0, 0]);
    }
    t.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0]);
    t.extend_from_slice(&gps_ifd.to_le_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(&[2, 0]);
    t.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
    t.extend_from_slice(&[0x12, 0x00, 2, 0, 7, 0, 0, 0]);
    t.extend_from_slice(&datum_at.to_le_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(GPS_MARK);
    t.push(0);
    t
}

/// `jpeg` with an APP1 segment of `payload` right after the start-of-image marker.
fn with_app1(jpeg: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() + 2) as u16;
    [
        &jpeg[..2],
        &[0xFF, 0xE1],
        &len.to_be_bytes(),
        payload,
        &jpeg[2..],
    ]
    .concat()
}

fn with_exif(jpeg: &[u8], orientation: Option<u8>) -> Vec<u8> {
    with_app1(jpeg, &[b"Exif\0\0".as_slice(), &exif(orientation)].concat())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

fn orientation_of(jpeg: &[u8]) -> Orientation {
    let reader = ImageReader::with_format(Cursor::new(jpeg), image::ImageFormat::Jpeg);
    reader.into_decoder().unwrap().orientation().unwrap()
}

fn small(max_side_px: u32) -> PhotoPolicy {
    PhotoPolicy {
        max_side_px,
        ..PhotoPolicy::default()
    }
}

#[test]
fn the_default_policy_is_the_shipped_one() {
    let p = PhotoPolicy::default();
    assert_eq!(
        (
            p.max_side_px,
            p.jpeg_quality,
            p.keep_location,
            p.keep_original,
            p.thumbnail_side_px,
            p.prefetch_thumbnails
        ),
        (1600, 80, false, false, 320, true)
    );
}

#[test]
fn a_large_photo_is_downscaled_to_the_longest_side_and_decodes() {
    let photo = with_exif(&jpeg_of(3000, 2000), None);
    let out = prepare_attachment(photo.clone(), "image/jpeg", &PhotoPolicy::default()).unwrap();
    assert_eq!(out.mime, "image/jpeg");
    let img = decode(&out.bytes);
    assert_eq!(img.width(), 1600);
    assert!(
        img.height().abs_diff(1067) <= 1,
        "aspect kept: {}",
        img.height()
    );
    assert!(
        out.bytes.len() < photo.len() / 2,
        "smaller: {} of {}",
        out.bytes.len(),
        photo.len()
    );
    assert!(!contains(&out.bytes, GPS_MARK) && !contains(&out.bytes, b"Exif"));
    assert_eq!(out.original, None, "originals are not kept by default");
}

#[test]
fn a_downscaled_photo_is_turned_upright_and_keeps_the_original_if_asked() {
    let photo = with_exif(&jpeg_of(1200, 600), Some(6)); // shown turned 90° clockwise
    let policy = PhotoPolicy {
        keep_original: true,
        ..small(400)
    };
    let out = prepare_attachment(photo.clone(), "image/jpeg", &policy).unwrap();
    let img = decode(&out.bytes);
    assert_eq!(
        (img.width(), img.height()),
        (200, 400),
        "portrait, as the phone showed it"
    );
    assert_eq!(orientation_of(&out.bytes), Orientation::NoTransforms);
    assert_eq!(out.original, Some(photo));
}

#[test]
fn a_photo_gets_a_small_upright_thumbnail_without_its_location() {
    let photo = with_exif(&jpeg_of(1200, 600), Some(6));
    let out = prepare_attachment(photo, "image/jpeg", &small(800)).unwrap();
    let thumb = out.thumbnail.expect("a thumbnail");
    let img = decode(&thumb);
    assert_eq!((img.width(), img.height()), (160, 320), "upright, 320 px");
    assert!(!contains(&thumb, GPS_MARK) && !contains(&thumb, b"Exif"));
    assert!(thumb.len() < out.bytes.len() / 4, "{} bytes", thumb.len());

    let tiny = prepare_attachment(jpeg_of(300, 200), "image/jpeg", &small(800)).unwrap();
    assert_eq!(tiny.thumbnail, None, "a small photo is its own thumbnail");
    let none = PhotoPolicy {
        thumbnail_side_px: 0,
        ..small(800)
    };
    let photo = jpeg_of(1200, 600);
    assert_eq!(
        prepare_attachment(photo, "image/jpeg", &none)
            .unwrap()
            .thumbnail,
        None
    );
}

#[test]
fn keep_location_carries_the_exif_over_a_downscale_upright() {
    let photo = with_exif(&jpeg_of(1200, 600), Some(6));
    let policy = PhotoPolicy {
        keep_location: true,
        ..small(400)
    };
    let out = prepare_attachment(photo, "image/jpeg", &policy).unwrap();
    assert!(
        contains(&out.bytes, GPS_MARK),
        "the GPS block is carried over"
    );
    assert_eq!(decode(&out.bytes).width(), 200);
    assert_eq!(
        orientation_of(&out.bytes),
        Orientation::NoTransforms,
        "not turned twice"
    );
}

#[test]
fn a_small_jpeg_loses_its_location_losslessly() {
    let plain = jpeg_of(640, 480);
    let photo = with_exif(&plain, None);
    assert!(contains(&photo, GPS_MARK));
    let out = prepare_attachment(photo, "image/jpeg", &PhotoPolicy::default()).unwrap();
    assert!(!contains(&out.bytes, b"Exif") && !contains(&out.bytes, GPS_MARK));
    assert_eq!(
        out.bytes, plain,
        "the same bytes as before the EXIF was added: not re-encoded"
    );
    assert_eq!(decode(&out.bytes).to_rgb8(), decode(&plain).to_rgb8());
    assert_eq!(out.mime, "image/jpeg");
}

#[test]
fn a_small_jpeg_keeps_its_orientation_without_its_location() {
    let plain = jpeg_of(64, 32);
    let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><exif:GPSLatitude>30,1.5N</exif:GPSLatitude></x:xmpmeta>";
    let photo = with_app1(&with_exif(&plain, Some(6)), xmp);
    let out = prepare_attachment(photo, "image/jpeg", &PhotoPolicy::default()).unwrap();
    assert!(!contains(&out.bytes, GPS_MARK) && !contains(&out.bytes, b"GPSLatitude"));
    assert_eq!(orientation_of(&out.bytes), Orientation::Rotate90);
    assert_eq!(
        decode(&out.bytes).to_rgb8(),
        decode(&plain).to_rgb8(),
        "same pixels"
    );
}

#[test]
fn keep_location_keeps_a_small_photo_as_it_is() {
    let photo = with_exif(&jpeg_of(640, 480), Some(3));
    let policy = PhotoPolicy {
        keep_location: true,
        keep_original: true,
        thumbnail_side_px: 0,
        ..PhotoPolicy::default()
    };
    let out = prepare_attachment(photo.clone(), "image/jpeg", &policy).unwrap();
    assert_eq!(
        out,
        Prepared {
            bytes: photo,
            mime: "image/jpeg".into(),
            original: None,
            thumbnail: None
        }
    );
}

/// A PNG chunk with its CRC.
fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut crc = !0u32;
    for &b in kind.iter().chain(data) {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    [
        &(data.len() as u32).to_be_bytes(),
        kind,
        data,
        &(!crc).to_be_bytes(),
    ]
    .concat()
}

#[test]
fn a_small_png_loses_its_exif_chunk_and_nothing_else() {
    let plain = png_of(&RgbaImage::from_pixel(
        40,
        30,
        image::Rgba([10, 120, 40, 255]),
    ));
    let ihdr_end = 8 + 12 + 13;
    let photo = [
        &plain[..ihdr_end],
        &chunk(b"eXIf", &exif(None)),
        &plain[ihdr_end..],
    ]
    .concat();
    assert_eq!(
        decode(&photo).to_rgba8(),
        decode(&plain).to_rgba8(),
        "a valid PNG"
    );
    let out = prepare_attachment(photo, "image/png", &PhotoPolicy::default()).unwrap();
    assert_eq!((out.bytes, out.mime.as_str()), (plain, "image/png"));
}

#[test]
fn a_large_png_becomes_a_jpeg_with_transparency_on_white() {
    let img = RgbaImage::from_fn(800, 400, |x, _| {
        if x < 400 {
            image::Rgba([0, 0, 0, 0])
        } else {
            image::Rgba([200, 30, 30, 255])
        }
    });
    let out = prepare_attachment(png_of(&img), "image/png", &small(200)).unwrap();
    assert_eq!(out.mime, "image/jpeg");
    let rgb = decode(&out.bytes).to_rgb8();
    assert_eq!(rgb.dimensions(), (200, 100));
    assert!(
        rgb.get_pixel(20, 50).0.iter().all(|&c| c > 240),
        "white: {:?}",
        rgb.get_pixel(20, 50)
    );
    assert!(rgb.get_pixel(180, 50).0[0] > 150, "red stays red");
}

#[test]
fn recordings_documents_and_other_types_pass_through() {
    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n".to_vec();
    let policy = PhotoPolicy {
        keep_original: true,
        ..small(1)
    };
    for (bytes, mime) in [
        (pdf, "application/pdf"),
        (b"#!AMR\n\x3c\x48".to_vec(), "audio/amr"),
        (b"RIFF\0\0\0\0WEBPVP8 ".to_vec(), "image/webp"),
    ] {
        let out = prepare_attachment(bytes.clone(), mime, &policy).unwrap();
        assert_eq!(
            out,
            Prepared {
                bytes,
                mime: mime.into(),
                original: None,
                thumbnail: None
            },
            "{mime}"
        );
    }
}

#[test]
fn corrupt_images_are_refused_clearly() {
    let photo = jpeg_of(64, 64);
    for bytes in [
        b"not a photo at all".to_vec(),
        vec![],
        photo[..2].to_vec(),
        photo[..40].to_vec(),
        png_of(&RgbaImage::new(4, 4)),
    ] {
        let err =
            prepare_attachment(bytes.clone(), "image/jpeg", &PhotoPolicy::default()).unwrap_err();
        assert!(
            matches!(err, MediaError::Unreadable { .. }),
            "{bytes:?}: {err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("not a readable image/jpeg image: "),
            "{err}"
        );
    }
    let cut = &jpeg_of(64, 64)[..]; // a segment whose length runs past the end
    let broken = [&cut[..2], &[0xFF, 0xE1, 0xFF, 0xF0], b"Exif\0\0"].concat();
    assert!(prepare_attachment(broken, "image/jpeg", &PhotoPolicy::default()).is_err());
}

#[test]
fn a_forged_huge_header_is_not_decoded() {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let png = [
        b"\x89PNG\r\n\x1a\n".as_slice(),
        &chunk(b"IHDR", &ihdr),
        &chunk(b"IEND", &[]),
    ]
    .concat();
    assert_eq!(
        prepare_attachment(png, "image/png", &PhotoPolicy::default()),
        Err(MediaError::TooLarge)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the bytes, an answer and never a panic (a photo's header makes it go deeper).
    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600), prefix in 0usize..3, png in any::<bool>()) {
        let heads: [&[u8]; 3] = [b"", b"\xFF\xD8\xFF", b"\x89PNG\r\n\x1a\n"];
        let bytes = [heads[prefix], &tail].concat();
        let mime = if png { "image/png" } else { "image/jpeg" };
        let _ = prepare_attachment(bytes.clone(), mime, &PhotoPolicy::default());
        let _ = prepare_attachment(bytes, mime, &small(1));
    }
}
