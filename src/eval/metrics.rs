//! Ranking metrics for anomaly scores (higher score = more anomalous, label true = anomaly),
//! computed as scikit-learn does: ROC AUC with ties counted ½, partial AUC up to a maximum
//! false-positive rate (McClish-standardised like `roc_auc_score(max_fpr=p)`, or the raw DCASE
//! 2020 Eq. 12 form), and average precision (`average_precision_score`).

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{labels} labels but {scores} scores")]
    LengthMismatch { labels: usize, scores: usize },
    #[error("only one class present ({positives} anomalies, {negatives} normals): the metric needs both")]
    OneClass { positives: usize, negatives: usize },
    #[error("score {index} is {value}: scores must be finite")]
    NonFinite { index: usize, value: f64 },
    #[error("max_fpr must be in (0, 1], got {0}")]
    BadMaxFpr(f64),
    #[error("max_fpr {max_fpr} keeps no normal out of {negatives}: floor(max_fpr * normals) must be >= 1")]
    TooFewNegatives { max_fpr: f64, negatives: usize },
}

/// Which partial AUC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaucKind {
    /// scikit-learn `roc_auc_score(max_fpr=p)`: 0.5 = chance, 1 = perfect (DCASE/MPDR reports).
    McClish,
    /// DCASE 2020 Eq. 12: share of (anomaly, top-⌊pN⌋ normal) pairs ranked correctly, ties 0.
    Raw,
}

/// A ROC curve: one point per distinct score threshold, starting at (0, 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    /// Threshold at each point (`+inf` for the first).
    pub thresholds: Vec<f64>,
}

fn check(labels: &[bool], scores: &[f64]) -> Result<(usize, usize), MetricError> {
    if labels.len() != scores.len() {
        return Err(MetricError::LengthMismatch { labels: labels.len(), scores: scores.len() });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricError::NonFinite { index, value: scores[index] });
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MetricError::OneClass { positives, negatives });
    }
    Ok((positives, negatives))
}

/// Cumulative (fp, tp) counts at each distinct threshold, scores descending.
fn steps(labels: &[bool], scores: &[f64]) -> Vec<(f64, usize, usize)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = Vec::new();
    let (mut fp, mut tp) = (0, 0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            out.push((scores[i], fp, tp));
        }
    }
    out
}

/// The full ROC curve (no intermediate points dropped).
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Result<Roc, MetricError> {
    let (p, n) = check(labels, scores)?;
    let mut roc = Roc { fpr: vec![0.0], tpr: vec![0.0], thresholds: vec![f64::INFINITY] };
    for (thr, fp, tp) in steps(labels, scores) {
        roc.fpr.push(fp as f64 / n as f64);
        roc.tpr.push(tp as f64 / p as f64);
        roc.thresholds.push(thr);
    }
    Ok(roc)
}

fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2).zip(y.windows(2)).map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0).sum()
}

/// ROC AUC; tied scores count ½.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Result<f64, MetricError> {
    let roc = roc_curve(labels, scores)?;
    Ok(trapezoid(&roc.fpr, &roc.tpr))
}

/// Area under the ROC curve for FPR in [0, max_fpr], unstandardised.
pub fn partial_area(labels: &[bool], scores: &[f64], max_fpr: f64) -> Result<f64, MetricError> {
    if !(max_fpr > 0.0 && max_fpr <= 1.0) {
        return Err(MetricError::BadMaxFpr(max_fpr));
    }
    let roc = roc_curve(labels, scores)?;
    // Points with fpr <= max_fpr, then one interpolated at max_fpr (as scikit-learn).
    let stop = roc.fpr.partition_point(|&f| f <= max_fpr);
    let mut x = roc.fpr[..stop].to_vec();
    let mut y = roc.tpr[..stop].to_vec();
    if stop < roc.fpr.len() {
        let (x0, x1, y0, y1) = (roc.fpr[stop - 1], roc.fpr[stop], roc.tpr[stop - 1], roc.tpr[stop]);
        x.push(max_fpr);
        y.push(y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0));
    }
    Ok(trapezoid(&x, &y))
}

/// Partial AUC up to `max_fpr`.
pub fn partial_auc(labels: &[bool], scores: &[f64], max_fpr: f64, kind: PaucKind) -> Result<f64, MetricError> {
    match kind {
        PaucKind::McClish => {
            let a = partial_area(labels, scores, max_fpr)?;
            let (min_area, max_area) = (0.5 * max_fpr * max_fpr, max_fpr);
            Ok(0.5 * (1.0 + (a - min_area) / (max_area - min_area)))
        }
        PaucKind::Raw => {
            if !(max_fpr > 0.0 && max_fpr <= 1.0) {
                return Err(MetricError::BadMaxFpr(max_fpr));
            }
            let (_, n) = check(labels, scores)?;
            let k = (max_fpr * n as f64 + 1e-9).floor() as usize;
            if k == 0 {
                return Err(MetricError::TooFewNegatives { max_fpr, negatives: n });
            }
            let mut neg: Vec<f64> = labels.iter().zip(scores).filter(|(l, _)| !**l).map(|(_, s)| *s).collect();
            neg.sort_by(|a, b| b.total_cmp(a));
            let pos: Vec<f64> = labels.iter().zip(scores).filter(|(l, _)| **l).map(|(_, s)| *s).collect();
            let hits: usize = neg[..k].iter().map(|&sn| pos.iter().filter(|&&sp| sp > sn).count()).sum();
            Ok(hits as f64 / (k * pos.len()) as f64)
        }
    }
}

/// Average precision as scikit-learn: Σ_k (R_k − R_{k−1}) · P_k over distinct thresholds.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Result<f64, MetricError> {
    let (p, _) = check(labels, scores)?;
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (_, fp, tp) in steps(labels, scores) {
        let recall = tp as f64 / p as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Ok(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MPDR-SPEC §1.7 unit-test vector (30 samples with ties).
    fn spec_vector() -> (Vec<bool>, Vec<f64>) {
        let mut scores: Vec<f64> = (1..20).map(|i| i as f64 / 10.0).collect();
        scores.push(2.5);
        let mut labels = vec![false; 20];
        scores.extend([0.35, 0.95, 1.45, 1.95, 2.0, 2.1, 2.5, 3.0, 3.5, 4.0]);
        labels.extend([true; 10]);
        (labels, scores)
    }

    #[test]
    fn spec_vector_gives_the_documented_values() {
        let (l, s) = spec_vector();
        assert!((roc_auc(&l, &s).unwrap() - 0.8125).abs() < 1e-12);
        assert!((partial_area(&l, &s, 0.1).unwrap() - 0.0525).abs() < 1e-12);
        assert!((partial_auc(&l, &s, 0.1, PaucKind::McClish).unwrap() - 0.75).abs() < 1e-12);
        assert!((partial_auc(&l, &s, 0.1, PaucKind::Raw).unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn average_precision_matches_scikit_learn() {
        // sklearn.metrics.average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.8333...
        let ap = average_precision(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!((ap - 0.8333333333333333).abs() < 1e-12);
        // ... and with a tie: ([0,1,0,1], [0.5,0.5,0.2,0.9]) == 0.8333...
        let ap = average_precision(&[false, true, false, true], &[0.5, 0.5, 0.2, 0.9]).unwrap();
        assert!((ap - (0.5 * 1.0 + 0.5 * (2.0 / 3.0))).abs() < 1e-12);
    }

    #[test]
    fn perfect_inverted_and_tied_rankings() {
        let l = [false, false, true, true];
        assert_eq!(roc_auc(&l, &[0.1, 0.2, 0.3, 0.4]).unwrap(), 1.0);
        assert_eq!(roc_auc(&l, &[0.4, 0.3, 0.2, 0.1]).unwrap(), 0.0);
        assert_eq!(roc_auc(&l, &[1.0; 4]).unwrap(), 0.5);
        assert_eq!(partial_auc(&l, &[0.1, 0.2, 0.3, 0.4], 0.1, PaucKind::McClish).unwrap(), 1.0);
        assert_eq!(partial_auc(&l, &[1.0; 4], 0.1, PaucKind::McClish).unwrap(), 0.5);
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), Err(MetricError::OneClass { positives: 2, negatives: 0 }));
        assert!(matches!(roc_auc(&[true, false], &[f64::NAN, 0.2]), Err(MetricError::NonFinite { index: 0, .. })));
        assert!(matches!(roc_auc(&[true], &[0.1, 0.2]), Err(MetricError::LengthMismatch { .. })));
        assert!(matches!(
            partial_auc(&[true, false], &[0.1, 0.2], 0.0, PaucKind::McClish),
            Err(MetricError::BadMaxFpr(_))
        ));
        assert!(matches!(
            partial_auc(&[true, false], &[0.1, 0.2], 0.1, PaucKind::Raw),
            Err(MetricError::TooFewNegatives { .. })
        ));
        let msg = roc_auc(&[false, false], &[0.1, 0.2]).unwrap_err().to_string();
        assert!(msg.contains("only one class"), "{msg}");
    }
}
