//! A labelled heatmap as PNG (built-in pixel font, [`crate::raster`]) or SVG: the attention
//! walk-through's weights and the classifier's confusion matrix are both drawn with it.

use std::path::Path;

use crate::raster::Canvas;
use resformer::{Error, Result};

/// A (rows, cols) matrix with names on both axes, each cell coloured by value / `scale` and
/// lettered with its label.
pub struct Heatmap<'a> {
    /// One line over the matrix.
    pub title: String,
    /// What the columns are.
    pub x_label: &'a str,
    /// What the rows are.
    pub y_label: &'a str,
    /// Row names.
    pub rows: &'a [String],
    /// Column names.
    pub cols: &'a [String],
    /// Row-major values; a cell is white at 0 and darkest at `scale`.
    pub values: &'a [f32],
    /// The value drawn darkest.
    pub scale: f32,
    /// The text in each cell, row-major.
    pub labels: Vec<String>,
    /// A row whose name is drawn highlighted.
    pub highlight_row: Option<usize>,
}

/// White to blue for 0..1, and whether the text on it should be light.
pub(crate) fn cell_color(v: f32) -> ([u8; 3], bool) {
    let v = v.clamp(0.0, 1.0);
    ([(255.0 * (1.0 - v)) as u8, (255.0 * (1.0 - 0.75 * v)) as u8, 255], v > 0.55)
}

impl Heatmap<'_> {
    fn intensity(&self, i: usize) -> f32 {
        if self.scale > 0.0 {
            self.values[i] / self.scale
        } else {
            0.0
        }
    }

    /// The heatmap as a PNG canvas, lettered with the built-in pixel font (upper-cased).
    pub fn png(&self) -> Canvas {
        const S: usize = 2; // font scale: 6 x 10 pixel letters
        let (nr, nc) = (self.rows.len(), self.cols.len());
        let widest = self.rows.iter().chain(self.cols).map(|t| Canvas::text_width(t, S)).max().unwrap_or(0);
        let widest_label = self.labels.iter().map(|l| Canvas::text_width(l, S)).max().unwrap_or(0);
        let cell = (widest + 12).max(widest_label + 16).max(40);
        let (left, top) = (widest + 40, 70);
        let w = (left + nc * cell + 20).max(Canvas::text_width(&self.title, S) + 20);
        let h = top + nr * cell + 20;
        let mut c = Canvas::new(w, h);
        let (black, grey) = ([0u8; 3], [136u8; 3]);
        c.text(10, 8, &self.title, S, black);
        c.text(left, 30, self.x_label, S, black);
        c.text(4, top - 18, self.y_label, S, black);
        for (j, name) in self.cols.iter().enumerate() {
            c.text(left + j * cell + (cell - Canvas::text_width(name, S)) / 2, top - 16, name, S, black);
        }
        for (i, name) in self.rows.iter().enumerate() {
            let ink = if Some(i) == self.highlight_row { [200, 0, 0] } else { black };
            c.text(left - 8 - Canvas::text_width(name, S), top + i * cell + cell / 2 - 5, name, S, ink);
        }
        for r in 0..nr {
            for k in 0..nc {
                let (x, y) = (left + k * cell, top + r * cell);
                let (fill, light_ink) = cell_color(self.intensity(r * nc + k));
                c.rect(x, y, cell, cell, grey);
                c.rect(x + 1, y + 1, cell - 2, cell - 2, fill);
                let label = &self.labels[r * nc + k];
                let ink = if light_ink { [255; 3] } else { black };
                c.text(x + (cell - Canvas::text_width(label, S)) / 2, y + cell / 2 - 5, label, S, ink);
            }
        }
        c
    }

    /// The heatmap as SVG text.
    pub fn svg(&self) -> String {
        let (nr, nc) = (self.rows.len(), self.cols.len());
        let (cell, left, top) = (64usize, 140usize, 90usize);
        let (w, h) = ((left + nc * cell + 20).max(560), top + nr * cell + 60);
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
             <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{}</text>\n",
            w / 2,
            esc(&self.title),
            left + nc * cell / 2,
            top - 40,
            esc(self.x_label),
            top + nr * cell / 2,
            top + nr * cell / 2,
            esc(self.y_label),
        );
        for (j, name) in self.cols.iter().enumerate() {
            let x = left + j * cell + cell / 2;
            s += &format!("<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", top - 10, esc(name));
        }
        for (i, name) in self.rows.iter().enumerate() {
            let weight = if Some(i) == self.highlight_row { " font-weight=\"bold\"" } else { "" };
            let y = top + i * cell + cell / 2 + 5;
            s += &format!("<text x=\"{}\" y=\"{y}\" text-anchor=\"end\"{weight}>{}</text>\n", left - 10, esc(name));
        }
        for r in 0..nr {
            for k in 0..nc {
                let ([cr, cg, cb], light_ink) = cell_color(self.intensity(r * nc + k));
                let ink = if light_ink { "white" } else { "black" };
                s += &format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({cr},{cg},{cb})\" stroke=\"#888\"/>\
                     <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ink}\">{}</text>\n",
                    left + k * cell,
                    top + r * cell,
                    left + k * cell + cell / 2,
                    top + r * cell + cell / 2 + 5,
                    esc(&self.labels[r * nc + k])
                );
            }
        }
        s + "</svg>\n"
    }

    /// Writes `path`: PNG for `.png`, SVG for `.svg` (`op` names the caller in errors).
    pub fn save(&self, path: &Path, op: &'static str) -> Result<()> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => self.png().save_png(path),
            Some("svg") => std::fs::write(path, self.svg())
                .map_err(|source| Error::Io { path: path.display().to_string(), source }),
            _ => Err(Error::InvalidArgument { op, what: format!("{}: write a .png or an .svg", path.display()) }),
        }
    }
}
