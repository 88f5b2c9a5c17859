//! Ensembles of fitted models, as scikit-learn builds them: a soft vote (the mean of the
//! members' probabilities), a hard vote (the share of members voting spammer) and
//! stacking (a balanced logistic regression over the members' probabilities, fitted on
//! their out-of-fold predictions). Members are plain models, never ensembles.

use crate::model::baselines::{secant, sigmoid, solve};
use crate::model::explain::{Explanation, Method};
use serde::{Deserialize, Serialize};

/// Most members an ensemble may have (a loaded file with more is refused).
pub const MAX_MEMBERS: usize = 16;

/// How the members' probabilities become the ensemble's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Combine {
    /// `VotingClassifier(voting="soft")`: their mean.
    Soft,
    /// `VotingClassifier(voting="hard")`: the share of members whose probability is
    /// above one half (scikit-learn's `predict`), so 0.5 is its majority.
    Hard,
    /// `StackingClassifier`: the logistic function of `intercept + weights · p`.
    Stacked { weights: Vec<f64>, intercept: f64 },
}

impl Combine {
    /// The ensemble's score from its members' probabilities of one account.
    pub fn score(&self, p: &[f64]) -> f64 {
        let n = p.len().max(1) as f64;
        match self {
            Combine::Soft => p.iter().sum::<f64>() / n,
            Combine::Hard => p.iter().filter(|&&v| v > 0.5).count() as f64 / n,
            Combine::Stacked { weights, intercept } => {
                sigmoid(intercept + weights.iter().zip(p).map(|(w, v)| w * v).sum::<f64>())
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Combine::Soft => "soft vote",
            Combine::Hard => "hard vote",
            Combine::Stacked { .. } => "stacking",
        }
    }

    /// Checks a combination read from a file against its member count.
    pub fn validate(&self, members: usize) -> Result<(), String> {
        if let Combine::Stacked { weights, intercept } = self
            && (weights.len() != members
                || !intercept.is_finite()
                || weights.iter().any(|w| !w.is_finite()))
        {
            return Err(format!(
                "stacking needs one finite weight per member ({members}), got {}",
                weights.len()
            ));
        }
        Ok(())
    }

    /// The ensemble's explanation from its members' explanations of one account.
    ///
    /// Soft: their mean (adds up exactly when each member's does; Shapley values are
    /// linear). Stacking: the final regression is linear in the members' probabilities,
    /// so each feature's log-odds term is the weighted sum of its members' terms (exact
    /// where theirs are), scaled to probability as the log-odds models are. Hard: the vote
    /// is a step of the members' probabilities with no additive explanation; it is
    /// explained by the mean of theirs, and says so.
    pub fn explain(&self, parts: &[Explanation]) -> Explanation {
        let n = parts.len().max(1) as f64;
        let mean = |f: fn(&Explanation) -> f64| parts.iter().map(f).sum::<f64>() / n;
        let mean_contributions = || mean_of(parts.iter().map(|e| e.contributions.clone()));
        match self {
            Combine::Soft => Explanation {
                method: Method::Members,
                base: mean(|e| e.base),
                contributions: mean_contributions(),
                prediction: mean(|e| e.prediction),
            },
            Combine::Hard => Explanation {
                method: Method::HardVote,
                base: mean(|e| e.base),
                contributions: mean_contributions(),
                prediction: self.score(&parts.iter().map(|e| e.prediction).collect::<Vec<_>>()),
            },
            Combine::Stacked { weights, intercept } => {
                let nf = parts.first().map_or(0, |e| e.contributions.len());
                let mut logit = vec![0.0; nf];
                let mut base = *intercept;
                for (w, e) in weights.iter().zip(parts) {
                    base += w * e.base;
                    logit
                        .iter_mut()
                        .zip(&e.contributions)
                        .for_each(|(a, c)| *a += w * c);
                }
                let (p0, p, slope) = secant(base, base + logit.iter().sum::<f64>());
                Explanation {
                    method: Method::Stacked,
                    base: p0,
                    contributions: logit.into_iter().map(|v| v * slope).collect(),
                    prediction: p,
                }
            }
        }
    }

    /// The ensemble's importance from its members': their mean, or for stacking weighted
    /// by the size of each member's weight.
    pub fn importance<'a>(&self, members: impl Iterator<Item = &'a [f64]>, nf: usize) -> Vec<f64> {
        let members: Vec<&[f64]> = members.collect();
        let share: Vec<f64> = match self {
            Combine::Stacked { weights, .. } if weights.iter().any(|w| *w != 0.0) => {
                let total: f64 = weights.iter().map(|w| w.abs()).sum();
                weights.iter().map(|w| w.abs() / total).collect()
            }
            _ => vec![1.0 / members.len().max(1) as f64; members.len()],
        };
        let mut out = vec![0.0; nf];
        for (m, s) in members.iter().zip(share) {
            out.iter_mut().zip(*m).for_each(|(a, b)| *a += s * b);
        }
        out
    }
}

/// The element-wise mean of equally long vectors.
pub fn mean_of(parts: impl Iterator<Item = Vec<f64>>) -> Vec<f64> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0usize;
    for p in parts {
        if sum.is_empty() {
            sum = p;
        } else {
            sum.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
        }
        n += 1;
    }
    let n = n.max(1) as f64;
    sum.iter_mut().for_each(|a| *a /= n);
    sum
}

/// Stacking's final estimator: scikit-learn's `LogisticRegression(class_weight=
/// "balanced")` with its defaults (L2, C = 1, unpenalised intercept) on the members'
/// out-of-fold probabilities (`features[m][i]`: member m's probability of row i).
/// Its objective is convex and has as many parameters as members plus one, so Newton's
/// method reaches the optimum scikit-learn's lbfgs approaches; written here because
/// smartcore's logistic regression takes no row weights. Returns (weights, intercept).
pub fn fit_stacker(features: &[Vec<f64>], labels: &[u8]) -> Result<(Vec<f64>, f64), String> {
    let m = features.len();
    let n = labels.len();
    let pos = labels.iter().filter(|&&l| l == 1).count();
    if pos == 0 || pos == n {
        return Err("stacking needs both classes in the training rows".into());
    }
    // Balanced: n / (2 · rows of the class).
    let w = [
        n as f64 / (2.0 * (n - pos) as f64),
        n as f64 / (2.0 * pos as f64),
    ];
    let mut beta = vec![0.0; m + 1]; // weights, then the intercept
    for _ in 0..100 {
        // Gradient and Hessian of sum_i w_i logloss_i + |weights|^2 / 2.
        let mut g = vec![0.0; m + 1];
        let mut h = vec![vec![0.0; m + 2]; m + 1];
        let mut x = vec![1.0; m + 1];
        for i in 0..n {
            x.iter_mut().zip(features).for_each(|(v, f)| *v = f[i]);
            let z: f64 = beta.iter().zip(&x).map(|(b, v)| b * v).sum();
            let p = sigmoid(z);
            let wi = w[usize::from(labels[i])];
            let r = wi * (p - f64::from(labels[i]));
            let s = wi * p * (1.0 - p);
            for ((ga, ha), xa) in g.iter_mut().zip(h.iter_mut()).zip(&x) {
                *ga += r * xa;
                ha.iter_mut()
                    .zip(&x)
                    .for_each(|(hab, xb)| *hab += s * xa * xb);
            }
        }
        // The penalty (not on the intercept, last); the gradient as the system's right side.
        for (a, (ga, ha)) in g.iter_mut().zip(h.iter_mut()).enumerate() {
            if a < m {
                *ga += beta[a];
                ha[a] += 1.0;
            }
            ha[m + 1] = *ga;
        }
        let step = solve(h).ok_or("stacking's regression is singular")?;
        beta.iter_mut().zip(&step).for_each(|(b, s)| *b -= s);
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-10 {
            let intercept = beta.pop().unwrap_or(0.0);
            return Ok((beta, intercept));
        }
    }
    Err("stacking's regression did not converge in 100 Newton steps".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(base: f64, contributions: Vec<f64>) -> Explanation {
        Explanation {
            method: Method::TreeShap,
            base,
            prediction: base + contributions.iter().sum::<f64>(),
            contributions,
        }
    }

    #[test]
    fn scores_by_each_rule() {
        let p = [0.2, 0.6, 0.9];
        assert!((Combine::Soft.score(&p) - 1.7 / 3.0).abs() < 1e-12);
        assert!((Combine::Hard.score(&p) - 2.0 / 3.0).abs() < 1e-12);
        // scikit-learn's predict: exactly one half is not a vote for spammer.
        assert_eq!(Combine::Hard.score(&[0.5, 0.5]), 0.0);
        let s = Combine::Stacked {
            weights: vec![1.0, 2.0, -1.0],
            intercept: -0.5,
        };
        assert!((s.score(&p) - sigmoid(-0.5 + 0.2 + 1.2 - 0.9)).abs() < 1e-12);
        assert!(s.validate(3).is_ok() && s.validate(2).is_err());
    }

    #[test]
    fn stacking_explains_its_log_odds_through_its_members() {
        let parts = [e(0.1, vec![0.2, -0.05]), e(0.3, vec![0.1, 0.2])];
        let s = Combine::Stacked {
            weights: vec![2.0, -1.0],
            intercept: 0.25,
        };
        let x = s.explain(&parts);
        assert_eq!(x.method, Method::Stacked);
        // Adds up to the stacked probability of the members' predictions ...
        let preds: Vec<f64> = parts.iter().map(|e| e.prediction).collect();
        assert!((x.prediction - s.score(&preds)).abs() < 1e-12);
        assert!((x.base + x.contributions.iter().sum::<f64>() - x.prediction).abs() < 1e-12);
        // ... from the regression at the members' bases, in proportion to each feature's
        // weighted terms: 2 * 0.2 - 0.1 = 0.3 and 2 * -0.05 - 0.2 = -0.3.
        assert!((x.base - sigmoid(0.25 + 0.2 - 0.3)).abs() < 1e-12);
        assert!((x.contributions[0] + x.contributions[1]).abs() < 1e-12);
        assert!(x.contributions[0] > 0.0);
        // A hard vote says what it explains: the members' mean, not the vote.
        let h = Combine::Hard.explain(&parts);
        assert_eq!(h.method, Method::HardVote);
        // Members at 0.25 and 0.6: one of two votes spammer.
        assert_eq!(h.prediction, 0.5);
        assert!((h.contributions[1] - 0.075).abs() < 1e-12);
    }

    #[test]
    fn the_stacker_is_scikit_learns_balanced_logistic_regression() {
        // Optimality conditions of scikit-learn's objective, checked at the fitted point:
        // sum_i w_i (p_i - y_i) x_i + weights = 0 and sum_i w_i (p_i - y_i) = 0.
        let mut rng = crate::util::rng::SplitMix64::new(3);
        let n = 400;
        let labels: Vec<u8> = (0..n).map(|i| u8::from(i % 9 == 0)).collect();
        let features: Vec<Vec<f64>> = (0..2)
            .map(|k| {
                labels
                    .iter()
                    .map(|&l| (rng.next_f64() * 0.6 + f64::from(l) * 0.3 * (k + 1) as f64).min(1.0))
                    .collect()
            })
            .collect();
        let (w, b) = fit_stacker(&features, &labels).unwrap();
        let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
        let cw = [n as f64 / (2.0 * (n as f64 - pos)), n as f64 / (2.0 * pos)];
        let mut g = [w[0], w[1], 0.0];
        for i in 0..n {
            let p = sigmoid(b + w[0] * features[0][i] + w[1] * features[1][i]);
            let r = cw[usize::from(labels[i])] * (p - f64::from(labels[i]));
            g[0] += r * features[0][i];
            g[1] += r * features[1][i];
            g[2] += r;
        }
        assert!(g.iter().all(|v| v.abs() < 1e-8), "{g:?}");
        assert!(
            w[0] > 0.0 && w[1] > 0.0,
            "both members predict the label: {w:?}"
        );
        assert!(fit_stacker(&features, &vec![0; n]).is_err());
    }
}
