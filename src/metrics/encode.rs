//! The OpenMetrics text of the per-target families, written here rather than through
//! prometheus-client's encoder: a target's counters and histograms are plain atomics in its
//! block (see `target.rs`), and prometheus-client can only encode exemplars it stores itself.
//! The text is what prometheus-client writes, byte for byte (names with their unit and
//! `_total`/`_info` suffixes, `le` first, integers by `itoa`, floats by `dtoa`), which the
//! golden exposition pins; exporter-wide series are still encoded by prometheus-client.

use prometheus_client::metrics::MetricType;

use super::families::Family;

/// Appends `value` as a label value: `\`, `"` and newlines escaped.
pub(super) fn escaped(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `name="value"` pairs joined by commas, as they appear between braces.
pub(super) fn label_pairs<'a>(
    out: &mut String,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escaped(out, value);
        out.push('"');
    }
}

/// The family's `# HELP`, `# TYPE` and (with a unit) `# UNIT` lines.
pub(super) fn descriptor(out: &mut String, family: &Family) {
    let name = |out: &mut String| {
        out.push_str(family.name);
        if let Some(unit) = &family.unit {
            out.push('_');
            out.push_str(unit.as_str());
        }
    };
    out.push_str("# HELP ");
    name(out);
    out.push(' ');
    out.push_str(family.help);
    out.push_str("\n# TYPE ");
    name(out);
    out.push(' ');
    out.push_str(family.kind.as_str());
    out.push('\n');
    if let Some(unit) = &family.unit {
        out.push_str("# UNIT ");
        name(out);
        out.push(' ');
        out.push_str(unit.as_str());
        out.push('\n');
    }
}

/// The start of a sample line: the family's name, unit and `suffix` (`total`, `bucket`, …).
pub(super) fn sample_name(out: &mut String, family: &Family, suffix: Option<&str>) {
    out.push_str(family.name);
    if let Some(unit) = &family.unit {
        out.push('_');
        out.push_str(unit.as_str());
    }
    let suffix = suffix.or(match family.kind {
        MetricType::Counter => Some("total"),
        MetricType::Info => Some("info"),
        _ => None,
    });
    if let Some(s) = suffix {
        out.push('_');
        out.push_str(s);
    }
}

pub(super) fn uint(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

pub(super) fn int(out: &mut String, v: i64) {
    out.push_str(itoa::Buffer::new().format(v));
}

pub(super) fn float(out: &mut String, v: f64) {
    out.push_str(dtoa::Buffer::new().format(v));
}

/// A gauge's value: integers as integers, floats as prometheus-client writes them.
pub(super) trait GaugeValue {
    fn write(&self, out: &mut String);
}

impl GaugeValue for i64 {
    fn write(&self, out: &mut String) {
        int(out, *self);
    }
}

impl GaugeValue for f64 {
    fn write(&self, out: &mut String) {
        float(out, *self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_openmetrics_asks() {
        let mut out = String::new();
        label_pairs(&mut out, [("a", "x"), ("b", "q\"b\\s\nn λ")]);
        assert_eq!(out, "a=\"x\",b=\"q\\\"b\\\\s\\nn λ\"");
    }

    #[test]
    fn floats_and_integers_are_written_as_prometheus_client_writes_them() {
        let mut out = String::new();
        for v in [1.0, 0.005, 10.0, 0.326, 1e-7, f64::INFINITY] {
            float(&mut out, v);
            out.push(' ');
        }
        int(&mut out, -1);
        assert_eq!(out, "1.0 0.005 10.0 0.326 1e-7 inf -1");
    }
}
