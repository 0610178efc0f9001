//! The tray icon, drawn in code: a disc in the state's colour with a white mark (a tick when
//! all is well, "!" when an account needs sign-in, "×" on an error, "–" while the daemon is
//! away). Colours differ in hue and shape differs too, for colour-blind users.

use crate::model::Overall;

/// The icon's side in pixels (hosts scale it).
pub const SIZE: u32 = 32;

/// The disc colour of each state, as RGB.
pub fn colour(o: Overall) -> [u8; 3] {
    match o {
        Overall::SignedIn => [0x2e, 0xa0, 0x43],
        Overall::NeedsSignIn => [0xf0, 0xa0, 0x00],
        Overall::Error => [0xd0, 0x21, 0x21],
        Overall::Offline => [0x80, 0x80, 0x80],
    }
}

type Seg = ((f32, f32), (f32, f32));

/// The white mark, as thick line segments in a 0..1 square.
fn mark(o: Overall) -> Vec<Seg> {
    match o {
        Overall::SignedIn => vec![((0.28, 0.52), (0.44, 0.68)), ((0.44, 0.68), (0.72, 0.34))],
        Overall::NeedsSignIn => vec![((0.5, 0.24), (0.5, 0.58)), ((0.5, 0.74), (0.5, 0.75))],
        Overall::Error => vec![((0.33, 0.33), (0.67, 0.67)), ((0.67, 0.33), (0.33, 0.67))],
        Overall::Offline => vec![((0.3, 0.5), (0.7, 0.5))],
    }
}

fn dist_to_seg(p: (f32, f32), s: Seg) -> f32 {
    let ((ax, ay), (bx, by)) = s;
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.0 - ax) * dx + (p.1 - ay) * dy) / len2).clamp(0.0, 1.0)
    };
    let (cx, cy) = (ax + t * dx, ay + t * dy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

/// The icon as RGBA rows, `size` × `size`.
pub fn rgba(o: Overall, size: u32) -> Vec<u8> {
    let [r, g, b] = colour(o);
    let n = size as f32;
    let mut out = Vec::with_capacity((size * size * 4) as usize);
    let segs = mark(o);
    for y in 0..size {
        for x in 0..size {
            let p = ((x as f32 + 0.5) / n, (y as f32 + 0.5) / n);
            let d = ((p.0 - 0.5).powi(2) + (p.1 - 0.5).powi(2)).sqrt();
            // Coverage of the disc, anti-aliased over about one pixel.
            let disc = ((0.48 - d) * n + 0.5).clamp(0.0, 1.0);
            let stroke = segs
                .iter()
                .map(|s| dist_to_seg(p, *s))
                .fold(f32::MAX, f32::min);
            let white = ((0.075 - stroke) * n + 0.5).clamp(0.0, 1.0) * disc;
            let mix = |c: u8| (f32::from(c) * (1.0 - white) + 255.0 * white).round() as u8;
            out.extend_from_slice(&[mix(r), mix(g), mix(b), (disc * 255.0).round() as u8]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Overall; 4] = [
        Overall::SignedIn,
        Overall::NeedsSignIn,
        Overall::Error,
        Overall::Offline,
    ];

    fn px(img: &[u8], x: u32, y: u32) -> [u8; 4] {
        let i = ((y * SIZE + x) * 4) as usize;
        [img[i], img[i + 1], img[i + 2], img[i + 3]]
    }

    #[test]
    fn a_disc_in_the_state_colour_with_a_white_mark_on_a_clear_ground() {
        for o in ALL {
            let img = rgba(o, SIZE);
            assert_eq!(img.len(), (SIZE * SIZE * 4) as usize);
            // Corners are transparent.
            assert_eq!(px(&img, 0, 0)[3], 0);
            assert_eq!(px(&img, SIZE - 1, SIZE - 1)[3], 0);
            // Most of the opaque pixels are the state colour, some are white.
            let [r, g, b] = colour(o);
            let (mut coloured, mut white) = (0, 0);
            for y in 0..SIZE {
                for x in 0..SIZE {
                    let p = px(&img, x, y);
                    if p[3] == 255 && p[..3] == [r, g, b] {
                        coloured += 1;
                    }
                    if p[3] == 255 && p[..3] == [255, 255, 255] {
                        white += 1;
                    }
                }
            }
            assert!(coloured > 400, "{o:?}: {coloured}");
            assert!(white > 10, "{o:?}: {white}");
        }
    }

    #[test]
    fn states_have_distinct_colours() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(colour(*a), colour(*b));
            }
        }
    }
}
