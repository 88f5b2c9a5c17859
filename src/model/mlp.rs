//! scikit-learn's `MLPClassifier(hidden_layer_sizes=(100, 50))` on standardised inputs,
//! with its defaults: ReLU hidden units, a logistic output, log loss with an L2 penalty
//! (alpha 1e-4, scaled by the batch size as scikit-learn does), Adam (learning rate 1e-3,
//! betas 0.9 / 0.999, epsilon 1e-8) on shuffled mini-batches of 200, Glorot-uniform
//! initialisation (bound sqrt(6 / (fan in + fan out))), and its stopping rule: at most
//! `max_epochs` passes, ending when the training loss has not improved by 1e-4 for more
//! than 10 epochs in a row. No class weights (scikit-learn's MLP takes none).
//!
//! A network has no additive structure: it is explained by occlusion (the change in
//! probability when one feature is set to its training mean), which is approximate and
//! does not add up to the score.

use crate::data::preprocess::Standardizer;
use crate::util::rng::SplitMix64;
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

const BATCH: usize = 200;
const LEARNING_RATE: f64 = 1e-3;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;
const TOL: f64 = 1e-4;
const NO_CHANGE: usize = 10;

/// A fitted network: the standardiser, then per layer its weights (fan in x fan out,
/// row-major) and biases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    pub standardizer: Standardizer,
    /// Layer widths, inputs first, the output (1) last.
    pub sizes: Vec<usize>,
    pub weights: Vec<Vec<f64>>,
    pub biases: Vec<Vec<f64>>,
    /// Passes over the training rows it took.
    pub epochs: usize,
    /// Training loss after the last pass.
    pub loss: f64,
}

/// One layer's parameters as matrices, and Adam's moments for them.
struct Layer {
    w: Array2<f64>,
    b: Array1<f64>,
    mw: Array2<f64>,
    vw: Array2<f64>,
    mb: Array1<f64>,
    vb: Array1<f64>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Mlp {
    /// Fits on imputed column-major features and 0/1 labels; `check` is called between
    /// epochs (it returns false to stop: cancelled).
    pub fn fit(
        columns: &[&[f64]],
        labels: &[u8],
        hidden: [usize; 2],
        alpha: f64,
        max_epochs: usize,
        seed: u64,
        check: &dyn Fn(usize, f64) -> bool,
    ) -> Option<Mlp> {
        let n = labels.len();
        let nf = columns.len();
        let standardizer = Standardizer::fit(columns);
        let x = Array2::from_shape_fn((n, nf), |(i, f)| standardizer.z(f, columns[f][i]));
        let y: Array1<f64> = labels.iter().map(|&l| f64::from(l)).collect();
        let sizes = vec![nf, hidden[0], hidden[1], 1];
        let mut rng = SplitMix64::new(seed ^ 0x6d6c_705f_696e_6974);
        let mut layers: Vec<Layer> = sizes
            .windows(2)
            .map(|w| {
                let bound = (6.0 / (w[0] + w[1]) as f64).sqrt();
                let mut u = || (rng.next_f64() * 2.0 - 1.0) * bound;
                let weights = Array2::from_shape_fn((w[0], w[1]), |_| u());
                let biases = Array1::from_shape_fn(w[1], |_| u());
                Layer {
                    mw: Array2::zeros(weights.raw_dim()),
                    vw: Array2::zeros(weights.raw_dim()),
                    mb: Array1::zeros(w[1]),
                    vb: Array1::zeros(w[1]),
                    w: weights,
                    b: biases,
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        let mut shuffle = SplitMix64::new(seed ^ 0x6d6c_705f_7368_7566);
        let (mut best, mut stale, mut step) = (f64::INFINITY, 0usize, 0i32);
        let mut epochs = 0;
        let mut loss = f64::NAN;
        for epoch in 0..max_epochs {
            for i in (1..n).rev() {
                order.swap(i, shuffle.below(i + 1));
            }
            let mut total = 0.0;
            for batch in order.chunks(BATCH) {
                let xb = x.select(Axis(0), batch);
                let yb = y.select(Axis(0), batch);
                step += 1;
                total += train_batch(&mut layers, &xb, &yb, alpha, step) * batch.len() as f64;
            }
            loss = total / n as f64;
            epochs = epoch + 1;
            if !loss.is_finite() || !check(epochs, loss) {
                return None;
            }
            // scikit-learn's `_update_no_improvement_count` (no early stopping set).
            if loss > best - TOL {
                stale += 1;
            } else {
                stale = 0;
            }
            if loss < best {
                best = loss;
            }
            if stale > NO_CHANGE {
                break;
            }
        }
        Some(Mlp {
            standardizer,
            sizes,
            weights: layers
                .iter()
                .map(|l| l.w.iter().copied().collect())
                .collect(),
            biases: layers.iter().map(|l| l.b.to_vec()).collect(),
            epochs,
            loss,
        })
    }

    /// Probabilities of row-major imputed rows (`nf` values per row).
    pub fn predict_rows(&self, rows: &[f64]) -> Vec<f64> {
        let nf = self.sizes[0];
        let n = rows.len() / nf;
        let mut a =
            Array2::from_shape_fn((n, nf), |(i, f)| self.standardizer.z(f, rows[i * nf + f]));
        let last = self.weights.len() - 1;
        for (k, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let w = ndarray::ArrayView2::from_shape((self.sizes[k], self.sizes[k + 1]), w)
                .expect("validated shape");
            let mut z = a.dot(&w);
            z += &ndarray::ArrayView1::from(b.as_slice());
            if k < last {
                z.mapv_inplace(|v| v.max(0.0));
            }
            a = z;
        }
        a.column(0).iter().map(|&z| sigmoid(z)).collect()
    }

    /// Structural check of a loaded network with `nf` inputs.
    pub fn valid(&self, nf: usize) -> bool {
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        self.sizes.len() >= 2
            && self.sizes.len() <= 8
            && self.sizes[0] == nf
            && self.sizes.last() == Some(&1)
            && self.sizes.iter().all(|&s| (1..=4096).contains(&s))
            && self.weights.len() == self.sizes.len() - 1
            && self.biases.len() == self.sizes.len() - 1
            && self
                .weights
                .iter()
                .enumerate()
                .all(|(k, w)| w.len() == self.sizes[k] * self.sizes[k + 1] && finite(w))
            && self
                .biases
                .iter()
                .enumerate()
                .all(|(k, b)| b.len() == self.sizes[k + 1] && finite(b))
            && self.standardizer.mean.len() == nf
            && self.standardizer.scale.len() == nf
            && finite(&self.standardizer.mean)
            && self
                .standardizer
                .scale
                .iter()
                .all(|s| s.is_finite() && *s > 0.0)
    }
}

/// One Adam step on a batch; returns the batch's loss before the step.
fn train_batch(
    layers: &mut [Layer],
    xb: &Array2<f64>,
    yb: &Array1<f64>,
    alpha: f64,
    step: i32,
) -> f64 {
    let (loss, grads) = gradients(layers, xb, yb, alpha);
    let lr = LEARNING_RATE * (1.0 - BETA2.powi(step)).sqrt() / (1.0 - BETA1.powi(step));
    for (l, (gw, gb)) in layers.iter_mut().zip(grads) {
        adam(&mut l.w, &mut l.mw, &mut l.vw, &gw, lr);
        adam(&mut l.b, &mut l.mb, &mut l.vb, &gb, lr);
    }
    loss
}

/// A layer's gradient: weights and biases.
type Gradient = (Array2<f64>, Array1<f64>);

/// The batch's loss (log loss plus scikit-learn's penalty `0.5 * alpha * sum(w^2) /
/// batch`) and its gradient for each layer's weights and biases, by backpropagation.
fn gradients(
    layers: &[Layer],
    xb: &Array2<f64>,
    yb: &Array1<f64>,
    alpha: f64,
) -> (f64, Vec<Gradient>) {
    let m = xb.nrows() as f64;
    let last = layers.len() - 1;
    // Forward: the activations of every layer (inputs first).
    let mut acts: Vec<Array2<f64>> = vec![xb.clone()];
    for (k, l) in layers.iter().enumerate() {
        let mut z = acts[k].dot(&l.w);
        z += &l.b;
        if k < last {
            z.mapv_inplace(|v| v.max(0.0));
        } else {
            z.mapv_inplace(sigmoid);
        }
        acts.push(z);
    }
    let p = acts[last + 1].column(0).to_owned();
    let eps = 1e-15; // scikit-learn clips probabilities the same way.
    let mut loss = 0.0;
    for (&pi, &yi) in p.iter().zip(yb) {
        let pi = pi.clamp(eps, 1.0 - eps);
        loss -= yi * pi.ln() + (1.0 - yi) * (1.0 - pi).ln();
    }
    loss /= m;
    let penalty: f64 = layers
        .iter()
        .map(|l| l.w.iter().map(|w| w * w).sum::<f64>())
        .sum();
    loss += 0.5 * alpha * penalty / m;
    // Backward: the output's delta is (p - y) / m for log loss on a logistic unit; a
    // ReLU passes the delta where its output was positive.
    let mut delta: Array2<f64> = (&p - yb).insert_axis(Axis(1)) / m;
    let mut grads = Vec::with_capacity(layers.len());
    for k in (0..layers.len()).rev() {
        let gw = acts[k].t().dot(&delta) + &(&layers[k].w * (alpha / m));
        let gb = delta.sum_axis(Axis(0));
        if k > 0 {
            let mut back = delta.dot(&layers[k].w.t());
            back.zip_mut_with(&acts[k], |d, &a| {
                if a <= 0.0 {
                    *d = 0.0;
                }
            });
            delta = back;
        }
        grads.push((gw, gb));
    }
    grads.reverse();
    (loss, grads)
}

fn adam<D: ndarray::Dimension>(
    param: &mut ndarray::Array<f64, D>,
    m: &mut ndarray::Array<f64, D>,
    v: &mut ndarray::Array<f64, D>,
    g: &ndarray::Array<f64, D>,
    lr: f64,
) {
    ndarray::Zip::from(param)
        .and(m)
        .and(v)
        .and(g)
        .for_each(|p, m, v, &g| {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= lr * *m / (v.sqrt() + EPSILON);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xor(n: usize) -> (Vec<Vec<f64>>, Vec<u8>) {
        let mut rng = SplitMix64::new(4);
        let (mut a, mut b, mut y) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (u, v) = (rng.next_f64() * 2.0 - 1.0, rng.next_f64() * 2.0 - 1.0);
            a.push(u);
            b.push(v);
            y.push(u8::from((u > 0.0) != (v > 0.0)));
        }
        (vec![a, b], y)
    }

    #[test]
    fn learns_what_no_linear_model_can_and_stops_by_scikit_learns_rule() {
        // XOR of two signs: a linear model is at chance, the network is not.
        let (cols, y) = xor(2000);
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let m = Mlp::fit(&refs, &y, [16, 8], 1e-4, 2000, 1, &|_, _| true).unwrap();
        let rows: Vec<f64> = (0..y.len())
            .flat_map(|i| [cols[0][i], cols[1][i]])
            .collect();
        let p = m.predict_rows(&rows);
        let right = p
            .iter()
            .zip(&y)
            .filter(|(p, y)| (**p > 0.5) == (**y == 1))
            .count();
        assert!(right as f64 / y.len() as f64 > 0.95, "{right} of 2000");
        // It stopped by its own rule before the limit, and is reproducible.
        assert!(m.epochs < 2000, "{} epochs", m.epochs);
        assert_eq!(
            m,
            Mlp::fit(&refs, &y, [16, 8], 1e-4, 2000, 1, &|_, _| true).unwrap()
        );
        assert!(m.valid(2) && !m.valid(3));
        // Cancelling between epochs stops it.
        assert!(Mlp::fit(&refs, &y, [16, 8], 1e-4, 300, 1, &|e, _| e < 2).is_none());
    }

    #[test]
    fn backpropagation_is_the_derivative_of_the_loss() {
        // Every weight's and bias's gradient matches the loss's central difference.
        let (cols, y) = xor(200);
        let x = Array2::from_shape_fn((200, 2), |(i, f)| cols[f][i]);
        let yb: Array1<f64> = y.iter().map(|&l| f64::from(l)).collect();
        let mut rng = SplitMix64::new(9);
        let mut layers: Vec<Layer> = [(2usize, 5usize), (5, 3), (3, 1)]
            .iter()
            .map(|&(a, b)| Layer {
                w: Array2::from_shape_fn((a, b), |_| rng.next_f64() - 0.5),
                b: Array1::from_shape_fn(b, |_| rng.next_f64() - 0.5),
                mw: Array2::zeros((a, b)),
                vw: Array2::zeros((a, b)),
                mb: Array1::zeros(b),
                vb: Array1::zeros(b),
            })
            .collect();
        let alpha = 0.3;
        let (_, grads) = gradients(&layers, &x, &yb, alpha);
        let h = 1e-6;
        for k in 0..3 {
            let (rows, cols) = layers[k].w.dim();
            for i in 0..rows {
                for j in 0..cols {
                    layers[k].w[(i, j)] += h;
                    let up = gradients(&layers, &x, &yb, alpha).0;
                    layers[k].w[(i, j)] -= 2.0 * h;
                    let down = gradients(&layers, &x, &yb, alpha).0;
                    layers[k].w[(i, j)] += h;
                    let numeric = (up - down) / (2.0 * h);
                    assert!(
                        (numeric - grads[k].0[(i, j)]).abs() < 1e-6,
                        "layer {k} w[{i},{j}]: {numeric} vs {}",
                        grads[k].0[(i, j)]
                    );
                }
            }
            for j in 0..cols {
                layers[k].b[j] += h;
                let up = gradients(&layers, &x, &yb, alpha).0;
                layers[k].b[j] -= 2.0 * h;
                let down = gradients(&layers, &x, &yb, alpha).0;
                layers[k].b[j] += h;
                let numeric = (up - down) / (2.0 * h);
                assert!((numeric - grads[k].1[j]).abs() < 1e-6, "layer {k} b[{j}]");
            }
        }
    }
}
