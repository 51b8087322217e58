//! Classification metrics, defined as scikit-learn's `classification_report` and
//! `confusion_matrix` define them (a class with no predictions has precision 0, as with
//! `zero_division=0`), so a model's report here and in Python agree to the last digit.

/// Accuracy, per-class precision / recall / F1 / support, their macro and weighted averages,
/// and the confusion matrix of one set of predictions.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    /// Number of classes (labels are 0..classes).
    pub classes: usize,
    /// Fraction of predictions equal to the truth.
    pub accuracy: f64,
    /// Per class: true positives over predicted positives (0 when nothing was predicted).
    pub precision: Vec<f64>,
    /// Per class: true positives over actual positives (0 for an absent class).
    pub recall: Vec<f64>,
    /// Per class: harmonic mean of precision and recall (0 when both are 0).
    pub f1: Vec<f64>,
    /// Per class: how many examples have that label.
    pub support: Vec<usize>,
    /// Unweighted means over classes of precision, recall, F1.
    pub macro_avg: [f64; 3],
    /// Support-weighted means of precision, recall, F1.
    pub weighted_avg: [f64; 3],
    /// `confusion[t][p]`: examples of true class t predicted as p.
    pub confusion: Vec<Vec<usize>>,
}

impl Report {
    /// The report of `predicted` against `truth` (same length, labels below `classes`).
    pub fn new(truth: &[usize], predicted: &[usize], classes: usize) -> Report {
        assert_eq!(truth.len(), predicted.len(), "one prediction per example");
        let mut confusion = vec![vec![0usize; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let support: Vec<usize> = confusion.iter().map(|row| row.iter().sum()).collect();
        let predicted_as: Vec<usize> = (0..classes).map(|c| confusion.iter().map(|row| row[c]).sum()).collect();
        let precision: Vec<f64> = (0..classes).map(|c| ratio(confusion[c][c], predicted_as[c])).collect();
        let recall: Vec<f64> = (0..classes).map(|c| ratio(confusion[c][c], support[c])).collect();
        let f1: Vec<f64> = precision
            .iter()
            .zip(&recall)
            .map(|(&p, &r)| if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) })
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / classes as f64;
        let total: usize = support.iter().sum();
        let weighted = |v: &[f64]| v.iter().zip(&support).map(|(x, &s)| x * s as f64).sum::<f64>() / total as f64;
        let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
        Report {
            classes,
            accuracy: ratio(correct, truth.len()),
            macro_avg: [mean(&precision), mean(&recall), mean(&f1)],
            weighted_avg: [weighted(&precision), weighted(&recall), weighted(&f1)],
            precision,
            recall,
            f1,
            support,
            confusion,
        }
    }

    /// How many predictions were right.
    pub fn accuracy_count(&self) -> usize {
        (0..self.classes).map(|c| self.confusion[c][c]).sum()
    }

    /// The report as text, laid out as `classification_report` prints it, and the confusion
    /// matrix under it.
    pub fn text(&self) -> String {
        let mut s = format!("{:>12} {:>9} {:>9} {:>9} {:>9}\n", "", "precision", "recall", "f1-score", "support");
        for c in 0..self.classes {
            s += &format!(
                "{c:>12} {:>9.4} {:>9.4} {:>9.4} {:>9}\n",
                self.precision[c], self.recall[c], self.f1[c], self.support[c]
            );
        }
        let n: usize = self.support.iter().sum();
        s += &format!("\n{:>12} {:>9} {:>9} {:>9.4} {:>9}\n", "accuracy", "", "", self.accuracy, n);
        for (name, a) in [("macro avg", self.macro_avg), ("weighted avg", self.weighted_avg)] {
            s += &format!("{name:>12} {:>9.4} {:>9.4} {:>9.4} {:>9}\n", a[0], a[1], a[2], n);
        }
        s += "\nconfusion matrix (rows: true class, columns: predicted):\n     ";
        for c in 0..self.classes {
            s += &format!("{c:>4}");
        }
        s.push('\n');
        for (t, row) in self.confusion.iter().enumerate() {
            s += &format!("{t:>4} ");
            for v in row {
                s += &format!("{v:>4}");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_worked_report() {
        // truth 0 0 1 1 2, predicted 0 1 1 1 0: class 0 P 1/2 R 1/2, class 1 P 2/3 R 1, class 2 P 0 R 0
        let r = Report::new(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 3);
        assert_eq!(r.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        assert_eq!(r.accuracy, 0.6);
        assert_eq!(r.precision, vec![0.5, 2.0 / 3.0, 0.0]);
        assert_eq!(r.recall, vec![0.5, 1.0, 0.0]);
        assert_eq!(r.f1, vec![0.5, 0.8, 0.0]);
        assert_eq!(r.support, vec![2, 2, 1]);
        assert!((r.macro_avg[2] - 1.3 / 3.0).abs() < 1e-15);
        assert!((r.weighted_avg[1] - 0.6).abs() < 1e-15);
        assert!(r.text().contains("accuracy") && r.text().contains("macro avg"));
    }

    #[test]
    fn a_class_never_predicted_has_precision_zero_as_in_scikit_learn() {
        let r = Report::new(&[0, 1], &[0, 0], 2);
        assert_eq!((r.precision[1], r.recall[1], r.f1[1]), (0.0, 0.0, 0.0));
    }
}
