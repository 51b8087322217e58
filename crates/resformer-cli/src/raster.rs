//! A small raster canvas with a built-in 3 x 5 pixel font, enough to write
//! labelled heatmaps as PNG without a font file or a graphics stack.

use std::path::Path;

use resformer::{Error, Result};

/// 3 x 5 glyphs, one row per string, `#` = ink. Letters are drawn upper-case.
const GLYPHS: &[(char, [&str; 5])] = &[
    ('A', [".#.", "#.#", "###", "#.#", "#.#"]),
    ('B', ["##.", "#.#", "##.", "#.#", "##."]),
    ('C', [".##", "#..", "#..", "#..", ".##"]),
    ('D', ["##.", "#.#", "#.#", "#.#", "##."]),
    ('E', ["###", "#..", "##.", "#..", "###"]),
    ('F', ["###", "#..", "##.", "#..", "#.."]),
    ('G', [".##", "#..", "#.#", "#.#", ".##"]),
    ('H', ["#.#", "#.#", "###", "#.#", "#.#"]),
    ('I', ["###", ".#.", ".#.", ".#.", "###"]),
    ('J', ["..#", "..#", "..#", "#.#", ".#."]),
    ('K', ["#.#", "#.#", "##.", "#.#", "#.#"]),
    ('L', ["#..", "#..", "#..", "#..", "###"]),
    ('M', ["#.#", "###", "###", "#.#", "#.#"]),
    ('N', ["##.", "#.#", "#.#", "#.#", "#.#"]),
    ('O', [".#.", "#.#", "#.#", "#.#", ".#."]),
    ('P', ["##.", "#.#", "##.", "#..", "#.."]),
    ('Q', [".#.", "#.#", "#.#", "##.", ".##"]),
    ('R', ["##.", "#.#", "##.", "#.#", "#.#"]),
    ('S', [".##", "#..", ".#.", "..#", "##."]),
    ('T', ["###", ".#.", ".#.", ".#.", ".#."]),
    ('U', ["#.#", "#.#", "#.#", "#.#", "###"]),
    ('V', ["#.#", "#.#", "#.#", "#.#", ".#."]),
    ('W', ["#.#", "#.#", "###", "###", "#.#"]),
    ('X', ["#.#", "#.#", ".#.", "#.#", "#.#"]),
    ('Y', ["#.#", "#.#", ".#.", ".#.", ".#."]),
    ('Z', ["###", "..#", ".#.", "#..", "###"]),
    ('0', ["###", "#.#", "#.#", "#.#", "###"]),
    ('1', [".#.", "##.", ".#.", ".#.", "###"]),
    ('2', ["##.", "..#", ".#.", "#..", "###"]),
    ('3', ["##.", "..#", ".#.", "..#", "##."]),
    ('4', ["#.#", "#.#", "###", "..#", "..#"]),
    ('5', ["###", "#..", "##.", "..#", "##."]),
    ('6', [".##", "#..", "###", "#.#", "###"]),
    ('7', ["###", "..#", ".#.", ".#.", ".#."]),
    ('8', ["###", "#.#", "###", "#.#", "###"]),
    ('9', ["###", "#.#", "###", "..#", "##."]),
    ('.', ["...", "...", "...", "...", ".#."]),
    (',', ["...", "...", "...", ".#.", "#.."]),
    ('-', ["...", "...", "###", "...", "..."]),
    ('_', ["...", "...", "...", "...", "###"]),
    ('[', ["##.", "#..", "#..", "#..", "##."]),
    (']', [".##", "..#", "..#", "..#", ".##"]),
    ('(', [".#.", "#..", "#..", "#..", ".#."]),
    (')', [".#.", "..#", "..#", "..#", ".#."]),
    ('#', ["#.#", "###", "#.#", "###", "#.#"]),
    ('\'', [".#.", ".#.", "...", "...", "..."]),
    (':', ["...", ".#.", "...", ".#.", "..."]),
    (';', ["...", ".#.", "...", ".#.", "#.."]),
    ('=', ["...", "###", "...", "###", "..."]),
    ('/', ["..#", "..#", ".#.", "#..", "#.."]),
    ('!', [".#.", ".#.", ".#.", "...", ".#."]),
    ('+', ["...", ".#.", "###", ".#.", "..."]),
    ('?', ["##.", "..#", ".#.", "...", ".#."]),
    (' ', ["...", "...", "...", "...", "..."]),
];

/// An RGB image.
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<[u8; 3]>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas { width, height, pixels: vec![[255; 3]; width * height] }
    }

    /// Fills a rectangle (clipped to the canvas).
    pub fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: [u8; 3]) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.pixels[yy * self.width + xx] = rgb;
            }
        }
    }

    /// Width in pixels of `text` at `scale` (4 columns per character, the last without its gap).
    pub fn text_width(text: &str, scale: usize) -> usize {
        (text.chars().count() * 4).saturating_sub(1) * scale
    }

    /// Draws `text` with its top-left corner at (x, y); unknown characters draw as `?`.
    pub fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, rgb: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let c = c.to_ascii_uppercase();
            let glyph = GLYPHS.iter().find(|(g, _)| *g == c).or_else(|| GLYPHS.iter().find(|(g, _)| *g == '?'));
            let Some((_, rows)) = glyph else { continue };
            for (r, row) in rows.iter().enumerate() {
                for (col, ink) in row.bytes().enumerate() {
                    if ink == b'#' {
                        self.rect(x + (i * 4 + col) * scale, y + r * scale, scale, scale, rgb);
                    }
                }
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let io = |source: std::io::Error| Error::Io { path: path.display().to_string(), source };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let png_err = |e: png::EncodingError| Error::File { path: path.display().to_string(), reason: e.to_string() };
        let mut w = enc.write_header().map_err(png_err)?;
        w.write_image_data(&self.pixels.concat()).map_err(png_err)?;
        w.finish().map_err(png_err)
    }

    /// (width, height) in pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The pixel at (x, y).
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        self.pixels[y * self.width + x]
    }
}
