//! The one rule that turns a probability into a verdict, used by every front-end, the
//! metrics, the feedback records and the experiments' statistics.

/// Spam when the probability is above the threshold; a probability equal to the
/// threshold is legitimate (scikit-learn's `predict` at 0.5 does the same).
#[inline]
pub fn is_spam(probability: f64, threshold: f64) -> bool {
    probability > threshold
}

/// [`is_spam`] as a 0/1 label (1 = spammer).
#[inline]
pub fn label(probability: f64, threshold: f64) -> u8 {
    u8::from(is_spam(probability, threshold))
}

/// The one agreement rate between the model and moderators: of the records that carry
/// the model's verdict (`judged`), the share whose verdict matched the moderator's
/// label (`agreed`); None when none carries a verdict. Records without a verdict
/// (feedback on a prediction never logged, an import without scores) are counted
/// beside it, never in it.
pub fn agreement(agreed: u64, judged: u64) -> Option<f64> {
    (judged > 0).then(|| agreed as f64 / judged as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn above_the_threshold_is_spam_and_equal_is_not() {
        assert!(is_spam(0.51, 0.5));
        assert!(!is_spam(0.5, 0.5));
        assert!(!is_spam(0.49, 0.5));
        assert_eq!(label(0.9, 0.3), 1);
        assert_eq!(label(0.3, 0.3), 0);
        // A probability that is not a number is never spam.
        assert!(!is_spam(f64::NAN, 0.5));
    }

    #[test]
    fn agreement_is_over_judged_records() {
        assert_eq!(agreement(3, 4), Some(0.75));
        assert_eq!(agreement(0, 0), None);
    }
}
