//! What the `resformer` command draws and prints beyond plain lines: the attention
//! walk-through, labelled heatmaps (PNG with a built-in pixel font, or SVG) and the bench
//! table. The engine itself is the `resformer` library; nothing here computes what a library
//! user would need.

pub mod heatmap;
pub mod raster;
pub mod table;
pub mod walkthrough;
