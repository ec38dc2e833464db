//! The Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics: OpenMetrics
//! rewritten line by line, the way the official Go client writes the older format. No `# EOF`,
//! no `# UNIT`, no exemplars; a counter is typed on its `_total` name, an info metric is a gauge
//! named `…_info`, `unknown` is `untyped`.

/// OpenMetrics text rewritten: `/probe`'s exposition, and the parts of `/metrics` that are not
/// the targets' samples (see [`Format::Text`](super::Format::Text)).
pub fn to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help = None;
    for line in openmetrics.lines() {
        rewrite(line, &mut help, &mut out);
    }
    out
}

/// One OpenMetrics line into the text format, appended to `out` (with its `\n`), if it has a
/// place there.
fn rewrite(line: &str, help: &mut Option<String>, out: &mut String) {
    if let Some(rest) = line.strip_prefix("# HELP ") {
        *help = Some(rest.to_owned());
        return;
    }
    if let Some(rest) = line.strip_prefix("# TYPE ") {
        let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
        let (name, kind) = match kind {
            "counter" => (format!("{name}_total"), "counter"),
            "info" => (format!("{name}_info"), "gauge"),
            "stateset" => (name.to_owned(), "gauge"),
            "gaugehistogram" => (name.to_owned(), "histogram"),
            "unknown" => (name.to_owned(), "untyped"),
            other => (name.to_owned(), other),
        };
        if let Some(text) = help.take() {
            let text = text.split_once(' ').map_or("", |(_, t)| t);
            // OpenMetrics escapes `"` in help text; the text format does not.
            out.push_str(&format!("# HELP {name} {}\n", text.replace("\\\"", "\"")));
        }
        out.push_str(&format!("# TYPE {name} {kind}\n"));
        return;
    }
    if line.starts_with('#') || line.is_empty() {
        // `# EOF`, `# UNIT`: nothing of the kind in the text format.
        return;
    }
    match memchr::memchr(b'#', line.as_bytes()) {
        None => out.push_str(line),
        Some(_) => out.push_str(without_exemplar(line)),
    }
    out.push('\n');
}

/// A sample line without its exemplar (` # {…} value`), which may only follow the value: the
/// labels are skipped as quoted strings, so a `#` inside a label value is left alone.
fn without_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 0;
    let (mut in_labels, mut in_string) = (false, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' if in_labels => in_string = !in_string,
            b'{' if !in_string => in_labels = true,
            b'}' if !in_string => in_labels = false,
            b'#' if !in_labels && !in_string => return line[..i].trim_end(),
            _ => {}
        }
        i += 1;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "# HELP tickr_probe_runs Finished probes, by result.\n\
        # TYPE tickr_probe_runs counter\n\
        tickr_probe_runs_total{target=\"a # {b}\",result=\"failure\"} 3 # {event_id=\"7\"} 1.0\n\
        # HELP tickr_build Build information.\n\
        # TYPE tickr_build info\n\
        tickr_build_info{version=\"0.1.0\"} 1\n\
        # HELP tickr_probe_duration_seconds Phase \\\"latency\\\".\n\
        # TYPE tickr_probe_duration_seconds histogram\n\
        # UNIT tickr_probe_duration_seconds seconds\n\
        tickr_probe_duration_seconds_bucket{le=\"0.1\"} 1 # {event_id=\"7\"} 0.05\n\
        # EOF\n";

    const TEXT: &str = "# HELP tickr_probe_runs_total Finished probes, by result.\n\
        # TYPE tickr_probe_runs_total counter\n\
        tickr_probe_runs_total{target=\"a # {b}\",result=\"failure\"} 3\n\
        # HELP tickr_build_info Build information.\n\
        # TYPE tickr_build_info gauge\n\
        tickr_build_info{version=\"0.1.0\"} 1\n\
        # HELP tickr_probe_duration_seconds Phase \"latency\".\n\
        # TYPE tickr_probe_duration_seconds histogram\n\
        tickr_probe_duration_seconds_bucket{le=\"0.1\"} 1\n";

    #[test]
    fn openmetrics_becomes_the_text_format() {
        assert_eq!(to_text(OPENMETRICS), TEXT);
    }
}
