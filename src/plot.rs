//! PNG pictures: piano rolls and training curves, drawn with a tiny built-in raster.
//!
//! No plotting dependency: [`Canvas`] is an RGB buffer with rectangles, lines and text in a 5x7
//! bitmap font (digits, upper-case letters, common punctuation; lower case is drawn as upper
//! case, unknown characters as a box). Pictures are encoded to memory with the `png` crate and
//! written atomically, so a failed write leaves no partial file.
//!
//! - [`piano_roll_png`]: time across, pitch up (88 rows, 4 px each), note cells in dark blue,
//!   black-key rows lightly shaded, a faint line below every C with its octave name (C1..C8),
//!   frame numbers below, a title above. 4 px per frame; pieces longer than 1,500 frames are
//!   drawn with fewer pixels per frame (down to 1) and, beyond 6,000 frames, several frames per
//!   column (a cell is on if any of its frames is).
//! - [`line_chart_png`]: several series in distinct colours, with a legend, "nice" numeric ticks
//!   on both axes, and axis labels. Non-finite points are skipped (the line breaks there); a
//!   single point is drawn as a marker; no finite point at all gives an empty frame that says
//!   "NO DATA".
use crate::data::{Sequence, KEYS, PITCH_MIN};
use crate::error::{write_atomic, Error, Result};
use std::path::Path;

/// An RGB colour.
pub type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];
const AXIS: Rgb = [90, 90, 90];
/// Colour of note cells in piano-roll pictures.
pub const NOTE_COLOUR: Rgb = [20, 60, 170];
const BLACK_KEY_ROW: Rgb = [244, 244, 248];
const OCTAVE_LINE: Rgb = [190, 190, 200];

/// Colours of the series of a line chart, in order (then repeated).
pub const PALETTE: [Rgb; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

/// A small RGB raster.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `bg`.
    pub fn new(width: usize, height: usize, bg: Rgb) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&bg);
        }
        Canvas { width, height, pixels }
    }

    /// Sets one pixel; coordinates outside the canvas are ignored.
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    /// The colour of one pixel (black outside the canvas).
    pub fn get(&self, x: usize, y: usize) -> Rgb {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
        } else {
            BLACK
        }
    }

    /// Fills the rectangle with corner (x, y), clipped to the canvas.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        let x0 = x.max(0);
        let y0 = y.max(0);
        let x1 = (x + w).min(self.width as i64);
        let y1 = (y + h).min(self.height as i64);
        for yy in y0..y1 {
            for xx in x0..x1 {
                self.set(xx, yy, c);
            }
        }
    }

    /// A line from `from` to `to` (Bresenham), `thick` pixels wide, clipped to `clip`
    /// (x, y, w, h) when given.
    pub fn line(&mut self, from: (i64, i64), to: (i64, i64), c: Rgb, thick: i64, clip: Option<(i64, i64, i64, i64)>) {
        let ((x0, y0), (x1, y1)) = (from, to);
        let (mut x, mut y) = (x0, y0);
        let dx = (x1 - x0).abs();
        let dy = -(y1 - y0).abs();
        let sx = if x0 < x1 { 1 } else { -1 };
        let sy = if y0 < y1 { 1 } else { -1 };
        let mut err = dx + dy;
        // Guard against absurd lengths (coordinates come from data mapped into the canvas).
        let mut budget = (dx - dy + 2).min(1 << 22);
        loop {
            for ox in 0..thick {
                for oy in 0..thick {
                    let (px, py) = (x + ox - thick / 2, y + oy - thick / 2);
                    let inside = match clip {
                        Some((cx, cy, cw, ch)) => px >= cx && py >= cy && px < cx + cw && py < cy + ch,
                        None => true,
                    };
                    if inside {
                        self.set(px, py, c);
                    }
                }
            }
            budget -= 1;
            if (x == x1 && y == y1) || budget <= 0 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, c: Rgb) {
        let mut cx = x;
        for ch in text.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.fill_rect(cx + col * scale, y + row as i64 * scale, scale, scale, c);
                    }
                }
            }
            cx += 6 * scale;
        }
    }

    /// Draws `text` rotated 90 degrees counter-clockwise (reading bottom to top), its glyphs'
    /// top at column x and the text ending at row y.
    pub fn text_vertical(&mut self, x: i64, y: i64, text: &str, scale: i64, c: Rgb) {
        let mut cy = y;
        for ch in text.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.fill_rect(x + row as i64 * scale, cy - col * scale, scale, scale, c);
                    }
                }
            }
            cy -= 6 * scale;
        }
    }

    /// Encodes the canvas as an 8-bit RGB PNG.
    pub fn to_png(&self) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        {
            let w = u32::try_from(self.width).map_err(|_| "picture too wide".to_string())?;
            let h = u32::try_from(self.height).map_err(|_| "picture too tall".to_string())?;
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(|e| format!("cannot encode PNG: {e}"))?;
            writer.write_image_data(&self.pixels).map_err(|e| format!("cannot encode PNG: {e}"))?;
            writer.finish().map_err(|e| format!("cannot encode PNG: {e}"))?;
        }
        Ok(out)
    }

    /// Encodes and writes the canvas atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_png().map_err(|m| Error::format(path, m))?;
        write_atomic(path, &bytes)
    }
}

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: i64) -> i64 {
    let n = text.chars().count() as i64;
    if n == 0 {
        0
    } else {
        n * 6 * scale - scale
    }
}

/// The 5x7 glyph of a character: 7 rows, bit 4 = leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        ' ' => [0, 0, 0, 0, 0, 0, 0],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        ';' => [0, 0x0C, 0x0C, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '\\' => [0, 0x10, 0x08, 0x04, 0x02, 0x01, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '\'' => [0x04, 0x04, 0x08, 0, 0, 0, 0],
        '"' => [0x0A, 0x0A, 0, 0, 0, 0, 0],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04],
        '?' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
        '*' => [0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '|' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

/// Is MIDI pitch `p` a black key?
fn is_black_key(p: u8) -> bool {
    matches!(p % 12, 1 | 3 | 6 | 8 | 10)
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / target.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    let m = if r < 1.5 {
        1.0
    } else if r < 3.5 {
        2.0
    } else if r < 7.5 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Formats a tick value with as many decimals as `step` needs (scientific for extremes).
fn format_tick(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    if v != 0.0 && (v.abs() >= 1e6 || step < 1e-4) {
        // Scientific, without trailing zeros in the mantissa: 1.50E-5 -> 1.5E-5.
        let s = format!("{v:.2E}");
        return match s.split_once('E') {
            Some((m, e)) => format!("{}E{e}", m.trim_end_matches('0').trim_end_matches('.')),
            None => s,
        };
    }
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()).clamp(0.0, 6.0) as usize };
    format!("{v:.decimals$}")
}

/// Writes a piano-roll picture (time across, pitch up).
pub fn piano_roll_png(path: &Path, seq: &Sequence, title: &str) -> Result<()> {
    piano_roll_canvas(seq, title).save(path)
}

/// Draws the piano-roll picture of [`piano_roll_png`].
pub fn piano_roll_canvas(seq: &Sequence, title: &str) -> Canvas {
    const ROW: i64 = 4;
    const LEFT: i64 = 34;
    const TOP: i64 = 24;
    const BOTTOM: i64 = 22;
    const RIGHT: i64 = 10;
    let frames = seq.frames.len().max(1);
    // Pixels per column and frames per column.
    let (px, per_col) = if frames <= 1500 {
        (4i64, 1usize)
    } else if frames <= 6000 {
        ((6000 / frames).max(1) as i64, 1usize)
    } else {
        (1i64, frames.div_ceil(6000))
    };
    let cols = frames.div_ceil(per_col) as i64;
    let plot_w = (cols * px).max(1);
    let plot_h = KEYS as i64 * ROW;
    let title_w = text_width(title, 2);
    let width = (LEFT + plot_w + RIGHT).max(title_w + 20).max(160);
    let height = TOP + plot_h + BOTTOM;
    let mut c = Canvas::new(width as usize, height as usize, WHITE);
    let y_of = |unit: usize| TOP + (KEYS as i64 - 1 - unit as i64) * ROW;
    // Background rows: black keys shaded, a line at the bottom of each C row.
    for unit in 0..KEYS {
        let p = PITCH_MIN + unit as u8;
        if is_black_key(p) {
            c.fill_rect(LEFT, y_of(unit), plot_w, ROW, BLACK_KEY_ROW);
        }
    }
    for unit in 0..KEYS {
        let p = PITCH_MIN + unit as u8;
        if p.is_multiple_of(12) {
            let y = y_of(unit) + ROW - 1;
            c.fill_rect(LEFT, y, plot_w, 1, OCTAVE_LINE);
            let label = format!("C{}", p / 12 - 1);
            c.text(LEFT - 4 - text_width(&label, 1), y - 6, &label, 1, AXIS);
        }
    }
    // Notes.
    for (t, frame) in seq.frames.iter().enumerate() {
        let col = (t / per_col) as i64;
        for &p in frame {
            if p < PITCH_MIN {
                continue;
            }
            let unit = (p - PITCH_MIN) as usize;
            if unit < KEYS {
                let gap = if px >= 3 { 1 } else { 0 };
                c.fill_rect(LEFT + col * px, y_of(unit), px - gap, ROW - 1, NOTE_COLOUR);
            }
        }
    }
    // Frame axis: a border, ticks and labels.
    let border = AXIS;
    c.fill_rect(LEFT - 1, TOP - 1, plot_w + 2, 1, border);
    c.fill_rect(LEFT - 1, TOP + plot_h, plot_w + 2, 1, border);
    c.fill_rect(LEFT - 1, TOP - 1, 1, plot_h + 2, border);
    c.fill_rect(LEFT + plot_w, TOP - 1, 1, plot_h + 2, border);
    let step = nice_step(seq.frames.len() as f64, (plot_w as f64 / 60.0).max(1.0)).max(1.0) as usize;
    let mut f = 0usize;
    while f <= seq.frames.len() {
        let x = LEFT + (f / per_col) as i64 * px;
        c.fill_rect(x, TOP + plot_h, 1, 4, border);
        let label = f.to_string();
        let lx = (x - text_width(&label, 1) / 2).clamp(0, width - text_width(&label, 1));
        c.text(lx, TOP + plot_h + 7, &label, 1, AXIS);
        f += step;
    }
    c.text(LEFT, 5, title, 2, BLACK);
    c
}

/// One line of a line chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes a line chart (e.g. training curves) with the given series.
pub fn line_chart_png(path: &Path, title: &str, x_label: &str, series: &[Series]) -> Result<()> {
    line_chart_canvas(title, x_label, series).save(path)
}

/// Draws the chart of [`line_chart_png`] (800 x 500 pixels).
pub fn line_chart_canvas(title: &str, x_label: &str, series: &[Series]) -> Canvas {
    const W: i64 = 800;
    const H: i64 = 500;
    const LEFT: i64 = 80;
    const RIGHT: i64 = 20;
    const TOP: i64 = 40;
    const BOTTOM: i64 = 50;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let mut c = Canvas::new(W as usize, H as usize, WHITE);
    c.text(LEFT, 12, title, 2, BLACK);
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
    let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for &(x, y) in s.points.iter().filter(|p| finite(p)) {
            xs = (xs.0.min(x), xs.1.max(x));
            ys = (ys.0.min(y), ys.1.max(y));
        }
    }
    let border = |c: &mut Canvas| {
        c.fill_rect(LEFT, TOP, pw, 1, AXIS);
        c.fill_rect(LEFT, TOP + ph, pw + 1, 1, AXIS);
        c.fill_rect(LEFT, TOP, 1, ph, AXIS);
        c.fill_rect(LEFT + pw, TOP, 1, ph, AXIS);
    };
    let xl_w = text_width(x_label, 1);
    c.text(LEFT + (pw - xl_w) / 2, H - 16, x_label, 1, BLACK);
    if !(xs.0 <= xs.1 && ys.0 <= ys.1) {
        border(&mut c);
        let msg = "NO DATA";
        c.text(LEFT + (pw - text_width(msg, 2)) / 2, TOP + ph / 2 - 7, msg, 2, AXIS);
        return c;
    }
    // Ranges: pad degenerate ones, then extend to whole ticks.
    let pad = |(lo, hi): (f64, f64)| {
        if hi - lo > 0.0 && (hi - lo).is_finite() {
            (lo, hi)
        } else {
            let d = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
            (lo - d, hi + d)
        }
    };
    let (x0, x1) = pad(xs);
    let (y0, y1) = pad(ys);
    let mut xstep = nice_step(x1 - x0, 8.0);
    let ystep = nice_step(y1 - y0, 6.0);
    let (y0, y1) = ((y0 / ystep).floor() * ystep, (y1 / ystep).ceil() * ystep);
    let (x0, x1) = if xs.0 == xs.1 { ((x0 / xstep).floor() * xstep, (x1 / xstep).ceil() * xstep) } else { (x0, x1) };
    // Fewer x ticks when their labels would collide.
    for _ in 0..4 {
        let widest = [x0, x1].iter().map(|&v| text_width(&format_tick(v, xstep), 1)).max().unwrap_or(0);
        let n = ((x1 - x0) / xstep).abs().min(1e6) + 1.0;
        if (widest + 12) as f64 * n <= pw as f64 {
            break;
        }
        xstep *= 2.0;
    }
    let sx = |x: f64| LEFT + (((x - x0) / (x1 - x0)) * pw as f64).round() as i64;
    let sy = |y: f64| TOP + ph - (((y - y0) / (y1 - y0)) * ph as f64).round() as i64;
    // Grid and tick labels.
    let mut k = (y0 / ystep).round();
    let mut guard = 0;
    while k * ystep <= y1 + ystep * 1e-6 && guard < 40 {
        guard += 1;
        let v = k * ystep;
        let y = sy(v);
        c.fill_rect(LEFT + 1, y, pw - 1, 1, GRID);
        c.fill_rect(LEFT - 4, y, 4, 1, AXIS);
        let label = format_tick(v, ystep);
        c.text(LEFT - 7 - text_width(&label, 1), y - 3, &label, 1, BLACK);
        k += 1.0;
    }
    let mut k = (x0 / xstep).ceil();
    let mut guard = 0;
    while k * xstep <= x1 + xstep * 1e-6 && guard < 40 {
        guard += 1;
        let v = k * xstep;
        let x = sx(v);
        c.fill_rect(x, TOP + 1, 1, ph - 1, GRID);
        c.fill_rect(x, TOP + ph, 1, 4, AXIS);
        let label = format_tick(v, xstep);
        let lw = text_width(&label, 1);
        c.text((x - lw / 2).clamp(0, W - lw - 1), TOP + ph + 8, &label, 1, BLACK);
        k += 1.0;
    }
    border(&mut c);
    // Series.
    let clip = Some((LEFT + 1, TOP + 1, pw - 1, ph - 1));
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let n_finite = s.points.iter().filter(|p| finite(p)).count();
        let mut prev: Option<(i64, i64)> = None;
        for p in &s.points {
            if !finite(p) {
                prev = None;
                continue;
            }
            let q = (sx(p.0), sy(p.1));
            if let Some(a) = prev {
                c.line(a, q, colour, 2, clip);
            }
            if n_finite <= 30 {
                c.fill_rect(q.0 - 2, q.1 - 2, 5, 5, colour);
            }
            prev = Some(q);
        }
    }
    // Legend (top right, inside the plot).
    if !series.is_empty() {
        let lw = series.iter().map(|s| text_width(&s.label, 1)).max().unwrap_or(0) + 30;
        let lh = series.len() as i64 * 12 + 6;
        let lx = LEFT + pw - lw - 8;
        let ly = TOP + 8;
        c.fill_rect(lx, ly, lw, lh, WHITE);
        c.fill_rect(lx, ly, lw, 1, AXIS);
        c.fill_rect(lx, ly + lh - 1, lw, 1, AXIS);
        c.fill_rect(lx, ly, 1, lh, AXIS);
        c.fill_rect(lx + lw - 1, ly, 1, lh, AXIS);
        for (i, s) in series.iter().enumerate() {
            let y = ly + 5 + i as i64 * 12;
            c.fill_rect(lx + 5, y + 2, 16, 3, PALETTE[i % PALETTE.len()]);
            c.text(lx + 25, y, &s.label, 1, BLACK);
        }
    }
    c
}
