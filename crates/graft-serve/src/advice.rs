//! What a person is told when the model is unsure: the API's `warning` and `graft predict`
//! say the same words.

/// The advice for a top probability `probability` below `threshold` (both 0–1).
pub fn uncertain_warning(probability: f32, threshold: f32) -> String {
    format!(
        "uncertain: {:.0}% is below the {:.0}% threshold. Retake the photo (closer, in focus, \
         good light, one subject) or have it checked by a person.",
        probability * 100.0,
        threshold * 100.0
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_both_numbers_and_what_to_do() {
        let w = super::uncertain_warning(0.42, 0.7);
        assert!(
            w.starts_with("uncertain: 42% is below the 70% threshold."),
            "{w}"
        );
        assert!(w.contains("Retake the photo"), "{w}");
    }
}
