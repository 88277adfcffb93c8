//! Multinomial logistic regression over sparse vectors, trained by stochastic gradient descent
//! with L2 regularisation. Deterministic: the visiting order comes from a fixed-seed generator,
//! and nothing depends on hash-map iteration order or threads.

/// `1 − p(true class)` under which an example's gradient step is skipped.
const FIT: f32 = 1e-3;

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Training {
    /// Passes over the data.
    pub epochs: usize,
    /// L2 penalty per example.
    pub lambda: f32,
    /// Initial learning rate.
    pub rate: f32,
}

impl Default for Training {
    fn default() -> Self {
        Self { epochs: 20, lambda: 2e-5, rate: 0.5 }
    }
}

/// One training example: a sparse vector, its class and its weight.
pub(crate) struct Example<'a> {
    pub x: &'a [(u32, f32)],
    pub class: usize,
    pub weight: f32,
}

/// Weights `features × classes`, row-major, and a bias per class.
#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    classes: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl Model {
    /// Fits a model over `features` features and `classes` classes.
    pub fn train(features: usize, classes: usize, examples: &[Example<'_>], t: Training) -> Self {
        let mut v = vec![0.0f32; features * classes];
        let mut bias = vec![0.0f32; classes];
        // The true weights are `scale × v`: decaying every weight each step then costs one multiply.
        let mut scale = 1.0f32;
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut z = vec![0.0f32; classes];
        let mut step = 0u64;
        for _ in 0..t.epochs {
            for i in (1..order.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                let ex = &examples[i];
                let rate = t.rate / (1.0 + t.rate * t.lambda * step as f32);
                step += 1;
                z.copy_from_slice(&bias);
                for &(f, x) in ex.x {
                    let row = &v[f as usize * classes..(f as usize + 1) * classes];
                    for (zk, w) in z.iter_mut().zip(row) {
                        *zk += scale * x * w;
                    }
                }
                softmax(&mut z);
                z[ex.class] -= 1.0;
                scale *= 1.0 - rate * t.lambda;
                // An example the model already gets right with near certainty has a gradient of
                // almost nothing: skipping it saves most of the work once the model has converged.
                if -z[ex.class] < FIT {
                    continue;
                }
                let g = rate * ex.weight / scale;
                for &(f, x) in ex.x {
                    let row = &mut v[f as usize * classes..(f as usize + 1) * classes];
                    for (w, zk) in row.iter_mut().zip(&z) {
                        *w -= g * x * zk;
                    }
                }
                for (b, zk) in bias.iter_mut().zip(&z) {
                    *b -= rate * ex.weight * zk;
                }
                if scale < 1e-6 {
                    v.iter_mut().for_each(|w| *w *= scale);
                    scale = 1.0;
                }
            }
        }
        v.iter_mut().for_each(|w| *w *= scale);
        Self { classes, weights: v, bias }
    }

    /// The class probabilities of `x` into `out`.
    pub fn probabilities(&self, x: &[(u32, f32)], out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(&self.bias);
        for &(f, value) in x {
            let row = &self.weights[f as usize * self.classes..(f as usize + 1) * self.classes];
            for (o, w) in out.iter_mut().zip(row) {
                *o += value * w;
            }
        }
        softmax(out);
    }
}

fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three classes, each owning one feature; feature 3 is shared noise.
    fn data() -> Vec<Vec<(u32, f32)>> {
        vec![vec![(0, 0.9), (3, 0.4)], vec![(1, 0.9), (3, 0.4)], vec![(2, 0.9), (3, 0.4)]]
    }

    fn train(xs: &[Vec<(u32, f32)>]) -> Model {
        let examples: Vec<Example<'_>> =
            xs.iter().enumerate().map(|(class, x)| Example { x, class, weight: 1.0 }).collect();
        Model::train(4, 3, &examples, Training { epochs: 200, ..Training::default() })
    }

    #[test]
    fn learns_separable_classes_with_probabilities() {
        let xs = data();
        let model = train(&xs);
        let mut p = Vec::new();
        for (class, x) in xs.iter().enumerate() {
            model.probabilities(x, &mut p);
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(p[class] > 0.8, "class {class}: {p:?}");
        }
        // Only the shared feature: no class stands out.
        model.probabilities(&[(3, 1.0)], &mut p);
        assert!(p.iter().all(|&q| q < 0.6), "{p:?}");
    }

    #[test]
    fn training_is_deterministic() {
        let xs = data();
        let (a, b) = (train(&xs), train(&xs));
        assert_eq!(a.weights, b.weights);
        assert_eq!(a.bias, b.bias);
    }
}
