//! Pictures made into the model's input: formats, colour, sizes, padding, inversion, folders, and the
//! errors for files that are not pictures.

use gpu_siamese::data::{list_images, load_image, to_input};
use gpu_siamese::model::InputShape;
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use std::path::{Path, PathBuf};

const GRAY28: InputShape = InputShape { h: 28, w: 28, c: 1 };

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-siamese-images-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn save(picture: &DynamicImage, path: &Path, format: ImageFormat) {
    picture.save_with_format(path, format).unwrap();
}

/// Luma as the image crate computes it: Rec. 709 weights.
fn luma(rgb: [u8; 3]) -> u8 {
    ((2126 * rgb[0] as u32 + 7152 * rgb[1] as u32 + 722 * rgb[2] as u32 + 5000) / 10000) as u8
}

#[test]
fn a_grayscale_png_of_the_models_size_is_taken_as_it_is() {
    let dir = temp_dir("gray");
    let pixels: Vec<u8> = (0..28 * 28).map(|i| (i * 7 % 256) as u8).collect();
    let picture = DynamicImage::ImageLuma8(GrayImage::from_raw(28, 28, pixels.clone()).unwrap());
    let path = dir.join("exact.png");
    save(&picture, &path, ImageFormat::Png);
    assert_eq!(load_image(&path, GRAY28, false).unwrap(), pixels);
    let inverted: Vec<u8> = pixels.iter().map(|v| 255 - v).collect();
    assert_eq!(load_image(&path, GRAY28, true).unwrap(), inverted);
    // BMP, another lossless format, gives the same bytes.
    let bmp = dir.join("exact.bmp");
    save(&DynamicImage::ImageRgb8(picture.to_rgb8()), &bmp, ImageFormat::Bmp);
    assert_eq!(load_image(&bmp, GRAY28, false).unwrap(), pixels);
}

#[test]
fn colour_becomes_luma_and_jpeg_stays_close() {
    let dir = temp_dir("colour");
    let colour = [200, 60, 30];
    let picture = DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 50, image::Rgb(colour)));
    let png = dir.join("flat.png");
    save(&picture, &png, ImageFormat::Png);
    let gray = load_image(&png, GRAY28, false).unwrap();
    assert_eq!(gray.len(), 28 * 28);
    assert!(gray.iter().all(|&v| v == luma(colour)), "{} vs {:?}", luma(colour), &gray[..4]);
    let jpeg = dir.join("flat.jpg");
    save(&picture, &jpeg, ImageFormat::Jpeg);
    let gray = load_image(&jpeg, GRAY28, false).unwrap();
    assert!(gray.iter().all(|&v| (v as i32 - luma(colour) as i32).abs() <= 3), "JPEG's loss is small on a flat colour");
    // A 3-channel model keeps the colour.
    let rgb = load_image(&png, InputShape { h: 8, w: 8, c: 3 }, false).unwrap();
    assert_eq!(rgb.len(), 8 * 8 * 3);
    assert!(rgb.chunks(3).all(|p| p == colour));
}

#[test]
fn other_sizes_are_scaled_with_their_aspect_kept_and_padded() {
    // 56 wide, 28 high: left half black, right half white. It becomes 28 x 14, centred vertically,
    // the 7 rows above and below padded with the border's mean, mid-grey.
    let picture = DynamicImage::ImageLuma8(GrayImage::from_fn(56, 28, |x, _| image::Luma([if x < 28 { 0 } else { 255 }])));
    let input = to_input(&picture, GRAY28, false);
    let at = |x: usize, y: usize| input[y * 28 + x];
    for y in [0, 6, 21, 27] {
        assert!((120..=136).contains(&at(3, y)) && (120..=136).contains(&at(24, y)), "padding row {y}: {} {}", at(3, y), at(24, y));
    }
    for y in 7..21 {
        assert!(at(2, y) < 10 && at(25, y) > 245, "row {y}: {} {}", at(2, y), at(25, y));
    }
    // A tall picture is padded left and right instead; a large one is shrunk without aliasing: a
    // one-pixel checkerboard averages to grey.
    let checker = DynamicImage::ImageLuma8(GrayImage::from_fn(280, 560, |x, y| image::Luma([if (x + y) % 2 == 0 { 0 } else { 255 }])));
    let input = to_input(&checker, GRAY28, false);
    assert!(input.iter().all(|&v| (110..=145).contains(&v)), "{:?}", &input[..28]);
    // A photo on white is padded with white.
    let on_white = DynamicImage::ImageLuma8(GrayImage::from_fn(20, 40, |x, y| image::Luma([if (5..15).contains(&x) && (10..30).contains(&y) { 30 } else { 255 }])));
    let input = to_input(&on_white, GRAY28, false);
    assert_eq!((input[0], input[27]), (255, 255));
}

#[test]
fn files_that_are_not_pictures_are_named() {
    let dir = temp_dir("bad");
    let text = dir.join("notes.png");
    std::fs::write(&text, "not a picture at all").unwrap();
    let e = load_image(&text, GRAY28, false).unwrap_err().to_string();
    assert!(e.contains("notes.png") && e.contains("not an image file"), "{e}");
    // A PNG cut short decodes to an error, not a panic.
    let picture = DynamicImage::ImageLuma8(GrayImage::from_fn(64, 64, |x, y| image::Luma([(x * y) as u8])));
    let whole = dir.join("whole.png");
    save(&picture, &whole, ImageFormat::Png);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_image(&cut, GRAY28, false).unwrap_err().to_string();
    assert!(e.contains("cut.png") && e.contains("cannot decode"), "{e}");
    let e = load_image(&dir.join("missing.png"), GRAY28, false).unwrap_err().to_string();
    assert!(e.contains("missing.png") && e.contains("cannot open"), "{e}");
}

#[test]
fn folders_list_pictures_with_their_class_in_order() {
    let dir = temp_dir("folders");
    let picture = DynamicImage::ImageLuma8(GrayImage::new(4, 4));
    for (folder, name) in [("shoes", "b.png"), ("shoes", "a.JPG"), ("bags", "ü 1.png"), ("", "loose.bmp"), (".hidden", "x.png"), ("bags/deep", "c.png")] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        let format = ImageFormat::from_path(name.to_lowercase()).unwrap();
        save(&picture, &dir.join(folder).join(name), format);
    }
    std::fs::write(dir.join("shoes/readme.txt"), "not listed").unwrap();
    let files = list_images(&dir).unwrap().files;
    let found: Vec<(String, Option<String>)> = files
        .iter()
        .map(|f| (f.path.strip_prefix(&dir).unwrap().to_string_lossy().to_string(), f.class.clone()))
        .collect();
    let class = |c: &str| Some(c.to_string());
    assert_eq!(
        found,
        [
            ("bags/deep/c.png".to_string(), class("bags")),
            ("bags/ü 1.png".to_string(), class("bags")),
            ("loose.bmp".to_string(), None),
            ("shoes/a.JPG".to_string(), class("shoes")),
            ("shoes/b.png".to_string(), class("shoes")),
        ]
    );
    assert!(load_image(&files[1].path, GRAY28, false).is_ok(), "a Unicode name loads");
}

#[test]
fn every_supported_format_decodes_to_the_same_picture() {
    let dir = temp_dir("formats");
    let pixels: Vec<u8> = (0..16 * 16).map(|i| ((i % 16) * 16) as u8).collect();
    let gray = DynamicImage::ImageLuma8(GrayImage::from_raw(16, 16, pixels).unwrap());
    let shape = InputShape { h: 16, w: 16, c: 1 };
    let expected = to_input(&gray, shape, false);
    // Lossless formats give the bytes back; JPEG comes close.
    for (name, format, colour, tolerance) in [
        ("a.png", ImageFormat::Png, false, 0),
        ("a.bmp", ImageFormat::Bmp, true, 0),
        ("a.gif", ImageFormat::Gif, true, 0),
        ("a.webp", ImageFormat::WebP, true, 0),
        // A TIFF file named .png: the contents decide the format, not the name.
        ("tiff named.png", ImageFormat::Tiff, false, 0),
        ("a.jpg", ImageFormat::Jpeg, false, 12),
    ] {
        let path = dir.join(name);
        let picture = if colour { DynamicImage::ImageRgb8(gray.to_rgb8()) } else { gray.clone() };
        picture.save_with_format(&path, format).unwrap();
        let got = load_image(&path, shape, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        let worst = got.iter().zip(&expected).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        assert!(worst <= tolerance, "{name}: off by {worst}");
    }
}
