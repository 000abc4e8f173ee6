//! Test images beside their nearest training images under an encoder, as
//! one PNG for `report.html` (lightly's way of looking at what an encoder
//! learned): a row per query, its nearest neighbours by cosine similarity
//! of the features to its right, each framed green when it shares the
//! query's class and red when it does not.

use crate::transforms::ImageU8;
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// One row of the grid: a query image and its neighbours, each with its
/// class.
pub struct Row {
    /// The query (a test image) and its class.
    pub query: (ImageU8, i64),
    /// Its nearest training images, most similar first.
    pub neighbours: Vec<(ImageU8, i64)>,
}

/// The indices of the `k` training rows nearest to each query row by
/// cosine similarity, most similar first.
///
/// # Shapes
/// `queries: [Q, D]`, `train: [N, D]` → `[Q, min(k, N)]`
pub fn nearest(queries: &Tensor, train: &Tensor, k: usize) -> Result<Vec<Vec<usize>>> {
    let norm = |t: &Tensor| {
        let t = t.to_kind(Kind::Float).flatten(1, -1);
        let n = t.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
        t / n
    };
    let k = k.min(train.size()[0] as usize) as i64;
    let (_, idx) = norm(queries).matmul(&norm(train).tr()).topk(k, 1, true, true);
    let flat =
        Vec::<i64>::try_from(idx.flatten(0, -1)).map_err(|e| Error::Config(format!("neighbours: {e}")))?;
    Ok(flat.chunks(k.max(1) as usize).map(|c| c.iter().map(|&i| i as usize).collect()).collect())
}

/// The first index of each class in `labels`, in class order, at most
/// `max` of them.
pub fn one_per_class(labels: &[i64], max: usize) -> Vec<usize> {
    let mut classes: Vec<i64> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    classes.iter().take(max).filter_map(|c| labels.iter().position(|l| l == c)).collect()
}

/// The grid as PNG bytes: each image scaled (nearest-neighbour) to `cell`
/// pixels a side, a gap after the query, frames of 3 pixels.
pub fn grid_png(rows: &[Row], cell: u32) -> Result<Vec<u8>> {
    let cols = rows.iter().map(|r| r.neighbours.len()).max().unwrap_or(0) as u32 + 1;
    if rows.is_empty() {
        return Err(Error::Config("a neighbour grid needs at least one query".into()));
    }
    let (frame, gap, pad) = (3u32, 12u32, 4u32);
    let step = cell + 2 * frame + pad;
    let width = cols * step + gap + pad;
    let height = rows.len() as u32 * step + pad;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut put = |img: &ImageU8, x0: u32, y0: u32, colour: [u8; 3]| {
        for y in 0..cell + 2 * frame {
            for x in 0..cell + 2 * frame {
                let border = x < frame || y < frame || x >= cell + frame || y >= cell + frame;
                let px = if border {
                    colour
                } else {
                    let sx = ((x - frame) as usize * img.w / cell as usize).min(img.w - 1);
                    let sy = ((y - frame) as usize * img.h / cell as usize).min(img.h - 1);
                    let at = |c: usize| img.data[(c.min(img.c - 1) * img.h + sy) * img.w + sx];
                    [at(0), at(1), at(2)]
                };
                canvas.put_pixel(x0 + x, y0 + y, image::Rgb(px));
            }
        }
    };
    for (r, row) in rows.iter().enumerate() {
        let y0 = pad + r as u32 * step;
        put(&row.query.0, pad, y0, [120, 120, 120]);
        for (j, (img, class)) in row.neighbours.iter().enumerate() {
            let colour = if *class == row.query.1 { [40, 170, 60] } else { [220, 40, 40] };
            put(img, pad + gap + (j as u32 + 1) * step, y0, colour);
        }
    }
    let mut png = Vec::new();
    canvas
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Config(format!("encoding the neighbour grid: {e}")))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(level: u8) -> ImageU8 {
        ImageU8 { c: 1, h: 4, w: 4, data: vec![level; 16] }
    }

    #[test]
    fn nearest_rows_are_found_by_cosine_and_framed_by_class() {
        let train = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.9, 0.1, -1.0, 0.0]).reshape([4, 2]);
        let queries = Tensor::from_slice(&[2.0f32, 0.1, 0.0, -3.0]).reshape([2, 2]);
        assert_eq!(nearest(&queries, &train, 2).unwrap(), vec![vec![0, 2], vec![3, 0]]);
        assert_eq!(one_per_class(&[2, 0, 2, 1, 0], 2), vec![1, 3]);
        let rows = vec![Row { query: (grey(50), 0), neighbours: vec![(grey(60), 0), (grey(200), 1)] }];
        let png = grid_png(&rows, 8).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        // 3 cells of 8 + 2 × 3 frame + 4 padding, a 12-pixel gap, 4 more padding.
        assert_eq!(img.dimensions(), (3 * 18 + 12 + 4, 18 + 4));
        let (green, red) = (image::Rgb([40, 170, 60]), image::Rgb([220, 40, 40]));
        assert_eq!(*img.get_pixel(4 + 12 + 18, 4), green, "the same class is framed green");
        assert_eq!(*img.get_pixel(4 + 12 + 36, 4), red, "another class is framed red");
        assert_eq!(*img.get_pixel(4 + 5, 4 + 5), image::Rgb([50, 50, 50]), "the query's pixels");
        assert!(grid_png(&[], 8).is_err());
    }
}
