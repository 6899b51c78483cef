//! Bounding and escaping: every value an alert shows came from an event
//! (attacker-influenced), so each is cut to the receiver's limit, visibly
//! (ending with [`TRUNCATED`]), with characters that could forge lines or
//! reorder text replaced. Slack mrkdwn also gets `&`, `<` and `>` as
//! entities, so a value cannot form a link or a mention, and backticks
//! neutralised inside code spans and blocks.

/// Ends every string a renderer had to cut.
pub const TRUNCATED: &str = "… (truncated)";

/// `s` cut on a char boundary to at most `max_chars` characters, ending
/// with [`TRUNCATED`] when it was cut (the marker counts towards the limit).
pub fn truncate(s: &str, max_chars: usize) -> String {
    bound(s, max_chars, one, keep)
}

/// How much of a limit a character uses.
pub(super) type Width = fn(char) -> usize;
/// Appends a character's rendering (itself, an entity, a replacement).
pub(super) type Escape = fn(char, &mut String);

pub(super) fn one(_: char) -> usize {
    1
}

pub(super) fn utf16(c: char) -> usize {
    c.len_utf16()
}

pub(super) fn width(s: &str, w: Width) -> usize {
    s.chars().map(w).sum()
}

pub(super) fn slack_width(s: &str) -> usize {
    width(s, utf16)
}

/// `s` with every char rendered by `escape`, at most `max` wide. When it
/// does not fit, it is cut between renderings (never inside an entity) and
/// ends with [`TRUNCATED`], or a bare `…` when even the marker is too wide.
pub(super) fn bound(s: &str, max: usize, w: Width, escape: Escape) -> String {
    let marker = width(TRUNCATED, w);
    let budget = max.saturating_sub(marker);
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(4)));
    let mut used = 0;
    // Bytes of `out` that leave room for the marker.
    let mut fits = 0;
    let mut piece = String::new();
    for c in s.chars() {
        piece.clear();
        escape(c, &mut piece);
        let pw = width(&piece, w);
        if used + pw > max {
            out.truncate(fits);
            let kept = out.trim_end().len();
            out.truncate(kept);
            if marker <= max {
                out.push_str(TRUNCATED);
            } else if max > 0 {
                out.push('…');
            }
            return out;
        }
        out.push_str(&piece);
        used += pw;
        if used <= budget {
            fits = out.len();
        }
    }
    out
}

/// Characters that could forge lines or reorder what a reader sees:
/// controls, and the invisible bidirectional and zero-width marks.
pub(super) fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

pub(super) fn keep(c: char, out: &mut String) {
    out.push(c);
}

/// One line of plain text: whitespace controls become spaces, other
/// hidden characters U+FFFD.
pub(super) fn esc_plain(c: char, out: &mut String) {
    match c {
        '\n' | '\r' | '\t' => out.push(' '),
        c if hidden(c) => out.push('\u{FFFD}'),
        c => out.push(c),
    }
}

/// Slack mrkdwn: the three control characters become entities, so no
/// value can open a link, a mention or a special command.
pub(super) fn esc_mrkdwn(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => esc_plain(c, out),
    }
}

/// Inside a Slack code span or block: also no backtick, which would end it.
pub(super) fn esc_code(c: char, out: &mut String) {
    match c {
        '`' => out.push('\u{02CB}'),
        c => esc_mrkdwn(c, out),
    }
}

/// Slack `plain_text` (the header): not parsed as mrkdwn, but whether
/// Slack decodes entities or control sequences there is not documented,
/// so the three control characters become look-alikes that can do neither.
pub(super) fn esc_header(c: char, out: &mut String) {
    match c {
        '&' => out.push('\u{FF06}'),
        '<' => out.push('\u{2039}'),
        '>' => out.push('\u{203A}'),
        c => esc_plain(c, out),
    }
}

/// A value for plain text, one line, at most `max` chars.
pub(super) fn plain(s: &str, max: usize) -> String {
    bound(s, max, one, esc_plain)
}

pub(super) fn plain_opt(s: Option<&str>, max: usize) -> String {
    s.map_or_else(|| "-".to_owned(), |s| plain(s, max))
}

/// A value for Slack mrkdwn text, escaped, at most `max` wide.
pub(super) fn md(s: &str, max: usize) -> String {
    bound(s, max, utf16, esc_mrkdwn)
}

/// A value in a Slack code span.
pub(super) fn md_code(s: &str, max: usize) -> String {
    if s.is_empty() {
        return "_(empty)_".to_owned();
    }
    format!("`{}`", bound(s, max, utf16, esc_code))
}

pub(super) fn md_code_opt(s: Option<&str>, max: usize) -> String {
    s.map_or_else(|| "—".to_owned(), |s| md_code(s, max))
}

/// `s` cut to `max` Slack width as a last resort (callers bound their
/// parts, so this only fires on pathological input).
pub(super) fn hard_cap(s: &str, max: usize) -> String {
    if slack_width(s) <= max {
        s.to_owned()
    } else {
        bound(s, max, utf16, keep)
    }
}

/// Lines joined with newlines, at most `max` Slack width: whole lines are
/// dropped, from the end (or, with `keep_last`, from the start), and a
/// note says how many.
pub(super) fn fit_lines(lines: &[String], max: usize, keep_last: bool) -> String {
    let all = lines.join("\n");
    if slack_width(&all) <= max {
        return all;
    }
    // Room for the note, "… 123456 more lines (truncated)".
    let budget = max.saturating_sub(40);
    let mut kept: Vec<&str> = Vec::new();
    let mut used = 0;
    let ordered: Box<dyn Iterator<Item = &String>> = if keep_last {
        Box::new(lines.iter().rev())
    } else {
        Box::new(lines.iter())
    };
    for l in ordered {
        let w = slack_width(l) + 1;
        if used + w > budget {
            break;
        }
        used += w;
        kept.push(l);
    }
    let dropped = lines.len() - kept.len();
    let joined = if keep_last {
        kept.reverse();
        format!("… {dropped} earlier lines (truncated)\n{}", kept.join("\n"))
    } else {
        format!("{}\n… {dropped} more lines (truncated)", kept.join("\n"))
    };
    hard_cap(joined.trim_matches('\n'), max)
}

/// A link target for Slack's `<url|text>`: nothing in it may end the link.
pub(super) fn slack_url(u: &str) -> String {
    let mut out = String::with_capacity(u.len());
    for c in u.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '|' => out.push_str("%7C"),
            ' ' => out.push_str("%20"),
            c if hidden(c) => {}
            c => out.push(c),
        }
    }
    out
}
