//! Small CSV tables (sweep.csv, history.csv, per_class.csv) through the `csv` crate, which
//! quotes and parses fields the way spreadsheets do.

/// The CSV text of `header` and `rows` (each as many fields as the header).
pub fn to_csv<R>(header: &[&str], rows: impl IntoIterator<Item = R>) -> Result<String, csv::Error>
where
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    // The writer was given only UTF-8 text.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The header and the rows of CSV `text`.
pub fn parse_csv(text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), csv::Error> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers()?.iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.map(|rec| rec.iter().map(str::to_string).collect()))
        .collect::<Result<_, _>>()?;
    Ok((header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_quotes_only_what_needs_it() {
        let text = to_csv(
            &["class", "f1"],
            [
                vec!["plain", "0.5"],
                vec!["with, comma", "1"],
                vec!["say \"hi\"", "0"],
            ],
        )
        .expect("csv");
        assert_eq!(
            text,
            "class,f1\nplain,0.5\n\"with, comma\",1\n\"say \"\"hi\"\"\",0\n"
        );
        let (header, rows) = parse_csv(&text).expect("parse");
        assert_eq!(header, ["class", "f1"]);
        assert_eq!(rows[1], ["with, comma", "1"]);
        assert_eq!(rows[2], ["say \"hi\"", "0"]);
    }
}
