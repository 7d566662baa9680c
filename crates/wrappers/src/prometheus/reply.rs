//! Prometheus' JSON replies: the success envelope with a matrix, and error envelopes.

use pgdw_fdw_api::{ErrorKind, FdwError};
use serde::Deserialize;
use serde_json::Value as Json;

/// One series of a range query.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Series {
    pub metric: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub values: Vec<(f64, String)>,
}

/// The error of an error envelope, if `body` is one.
pub fn envelope_error(body: &str) -> Option<(String, String)> {
    let v: Json = serde_json::from_str(body).ok()?;
    (v.get("status").and_then(Json::as_str) == Some("error")).then(|| {
        (
            text(&v, "errorType").unwrap_or("unknown").to_string(),
            text(&v, "error").unwrap_or_default().to_string(),
        )
    })
}

fn text<'a>(v: &'a Json, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Json::as_str)
}

/// The `data` of a success envelope (every endpoint of Prometheus' API answers one); an
/// error envelope, a reply cut short or no data at all is an error.
pub fn success_data(body: &str) -> Result<Json, FdwError> {
    let mut v: Json = serde_json::from_str(body).map_err(|e| {
        FdwError::new(
            ErrorKind::BadReply,
            format!("Prometheus sent a reply that is not valid JSON: {e}"),
        )
        .with_detail(excerpt(body))
        .with_hint("a proxy in front of Prometheus may have cut the reply short; check base_url")
    })?;
    if text(&v, "status") != Some("success") {
        return Err(FdwError::new(
            ErrorKind::Remote,
            format!(
                "Prometheus answered {}: {}",
                text(&v, "errorType").unwrap_or("error"),
                text(&v, "error").unwrap_or_default()
            ),
        ));
    }
    match v.get_mut("data").map(Json::take) {
        Some(data) if !data.is_null() => Ok(data),
        _ => Err(FdwError::new(
            ErrorKind::BadReply,
            "Prometheus' reply has no data",
        )),
    }
}

/// Parse a query_range reply into its series.
pub fn parse_matrix(body: &str) -> Result<Vec<Series>, FdwError> {
    let mut data = success_data(body)?;
    let result_type = text(&data, "resultType").unwrap_or("nothing").to_string();
    if result_type != "matrix" {
        return Err(FdwError::new(
            ErrorKind::BadReply,
            format!("expected a matrix from query_range, got {result_type}"),
        ));
    }
    let result = data.get_mut("result").map(Json::take).unwrap_or(Json::Null);
    serde_json::from_value(result).map_err(|e| {
        FdwError::new(
            ErrorKind::BadReply,
            format!("Prometheus' matrix is malformed: {e}"),
        )
    })
}

/// The start of a body, for error details.
pub fn excerpt(body: &str) -> String {
    let cut: String = body.chars().take(200).collect();
    if cut.len() < body.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_matrix_with_fractional_times_and_special_values() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"a"},"values":[[1435781430.781,"1"],[1435781445,"NaN"],[1435781460,"+Inf"]]}]}}"#;
        let s = parse_matrix(body).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].values[0], (1435781430.781, "1".to_string()));
        assert_eq!(s[0].values[1].1, "NaN");
        assert_eq!(s[0].metric["job"], "a");
    }

    #[test]
    fn error_envelopes_and_truncation_are_errors() {
        let e = parse_matrix(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Remote);
        assert_eq!(e.message, "Prometheus answered bad_data: parse error");
        let e =
            parse_matrix(r#"{"status":"success","data":{"resultType":"matrix","result":[{"met"#)
                .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadReply);
    }
}
