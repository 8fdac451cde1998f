//! The web page's offline predictions in `graft monitor`: made on devices by the exported
//! app, sent back by `POST /feedback` (the audit trail's `field_predictions`), judged beside
//! the served traffic.

use crate::monitor::{class_check, confidence_checks, Answer, Check, Report, Source};
use crate::reference::Reference;

/// A prediction the exported web page made on a device, offline, and sent back later
/// (`POST /feedback`): no image statistics or embedding, only the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldObservation {
    /// When the device made it (its clock), ms since the Unix epoch.
    pub made_ms: i64,
    pub predicted: String,
    pub probability: f64,
    pub confident: bool,
    /// SHA-256 of the ONNX file that made it.
    pub sha256: String,
}

impl<'a> From<&'a FieldObservation> for Answer<'a> {
    fn from(o: &'a FieldObservation) -> Answer<'a> {
        Answer {
            predicted: &o.predicted,
            probability: o.probability,
            confident: o.confident,
        }
    }
}

/// Adds the checks of `field` (the web page's offline predictions) to `report`: the class mix
/// and confidence, judged as served answers are, under their own names (`field_…`, kind
/// `field`), and the share made by a model file other than the run's exports (`exported`,
/// their SHA-256s): devices still on an old model, reported and not alerted on.
pub fn judge_field(
    report: &mut Report,
    reference: &Reference,
    field: &[FieldObservation],
    exported: &[String],
) {
    report.field_predictions = field.len();
    if field.is_empty() {
        return;
    }
    let t = report.thresholds;
    let enough = field.len() >= t.min_requests;
    let answers: Vec<Answer<'_>> = field.iter().map(Answer::from).collect();
    report
        .checks
        .push(class_check(reference, &answers, &t, enough, Source::Field));
    report.checks.extend(confidence_checks(
        reference,
        &answers,
        &t,
        enough,
        Source::Field,
    ));
    let other = field
        .iter()
        .filter(|f| !exported.contains(&f.sha256))
        .count();
    let share = other as f64 / field.len() as f64;
    let files = field
        .iter()
        .map(|f| f.sha256.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    report.checks.push(Check {
        name: "field_other_model".into(),
        kind: "field",
        value: share,
        detail: format!(
            "{other} of {} field predictions came from a model file other than the run's \
             export ({files} files seen); those devices have not reloaded the page since",
            field.len()
        ),
        alert: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::tests::{reference, traffic};
    use crate::monitor::{judge, Thresholds};

    fn field(
        n: usize,
        only_a: bool,
        probability: f64,
        sha: impl Fn(usize) -> String,
    ) -> Vec<FieldObservation> {
        (0..n)
            .map(|i| FieldObservation {
                made_ms: i as i64,
                predicted: if only_a || i % 2 == 0 { "a" } else { "b" }.into(),
                probability,
                confident: probability >= 0.7,
                sha256: sha(i),
            })
            .collect()
    }

    #[test]
    fn field_predictions_are_judged_beside_served_ones_under_their_own_names() {
        let t = Thresholds::default();
        let r = reference();
        let exported = vec!["new".to_string()];
        let mut report = judge(&r, &traffic(1.0, false), &[], &t);
        judge_field(
            &mut report,
            &r,
            &field(100, false, 0.9, |_| "new".into()),
            &exported,
        );
        assert_eq!(report.field_predictions, 100);
        assert_eq!(report.alerts().count(), 0, "{report:#?}");
        let names: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.kind == "field")
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "field_class_mix",
                "field_mean_confidence",
                "field_low_confidence_rate",
                "field_other_model"
            ]
        );
        // Devices seeing one class with little confidence alert, on the field checks alone;
        // a quarter of them on an older file is reported, not alerted.
        let mut report = judge(&r, &traffic(1.0, false), &[], &t);
        let old = |i: usize| if i.is_multiple_of(4) { "old" } else { "new" }.to_string();
        judge_field(&mut report, &r, &field(100, true, 0.5, old), &exported);
        let alerts: Vec<&str> = report.alerts().map(|c| c.name.as_str()).collect();
        assert_eq!(
            alerts,
            [
                "field_class_mix",
                "field_mean_confidence",
                "field_low_confidence_rate"
            ]
        );
        let stale = report
            .checks
            .iter()
            .find(|c| c.name == "field_other_model")
            .expect("check");
        assert_eq!(stale.value, 0.25);
        assert!(
            stale.detail.contains("25 of 100") && stale.detail.contains("2 files"),
            "{}",
            stale.detail
        );
        // Too few: reported, never alerted.
        let mut report = judge(&r, &traffic(1.0, false), &[], &t);
        judge_field(
            &mut report,
            &r,
            &field(10, true, 0.5, |_| "new".into()),
            &exported,
        );
        assert_eq!(report.alerts().count(), 0);
    }
}
