//! Text shown to people (the CLI's human output, the notes of a template made from an
//! image) with its control characters made visible the way shell quoting shows them:
//! as the escapes of bash's `$'…'` (`$'\r'`, `$'\t'`, `$'\e'`, `$'\x01'`, `$'\u0085'`), the
//! form `printf %q` and GNU `ls` print. So a stored value can neither move the cursor,
//! erase a line or recolour the terminal, nor hide a CR or TAB from the reader. This is for
//! eyes only: JSON output stays exact.
//!
//! Control characters are Unicode's Cc: U+0000–U+001F, U+007F (DEL) and U+0080–U+009F (C1,
//! which some terminals obey like ESC sequences).
use std::borrow::Cow;

/// Whether `s` holds a control character.
pub fn has_controls(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Appends the escape that stands for `c` (a control character) inside `$'…'`.
fn push_escape(out: &mut String, c: char) {
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\u{b}' => out.push_str("\\v"),
        '\u{c}' => out.push_str("\\f"),
        '\r' => out.push_str("\\r"),
        '\u{1b}' => out.push_str("\\e"),
        c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{:04x}", c as u32)),
    }
}

/// `s` in ANSI-C quotes: `$'…'`, every control character escaped, and `\` and `'` too.
fn ansi_c(s: &str) -> String {
    let mut out = String::from("$'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if c.is_control() => push_escape(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A value shown as it is when it holds no control character, else whole in `$'…'`
/// (`a\rb` shows as `$'a\rb'`), as a shell would quote it.
pub fn word(s: &str) -> Cow<'_, str> {
    if has_controls(s) {
        Cow::Owned(ansi_c(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// A word quoted for a POSIX shell ([`crate::template::sh_quote`]) when it holds no control
/// character, else in `$'…'`: the form to show a command line in, where a raw CR would hide
/// what precedes it.
pub fn sh_word(s: &str) -> String {
    if has_controls(s) {
        ansi_c(s)
    } else {
        crate::template::sh_quote(s)
    }
}

/// [`sh_word`] of each word, joined by spaces.
pub fn sh_join(argv: &[String]) -> String {
    argv.iter()
        .map(|w| sh_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Free text (a note, a line of a readme): each run of control characters replaced where
/// it is by its `$'…'` (`a<CR>b` shows as `a$'\r'b`). With `keep_newlines`, `\n` stays (text
/// shown as a block of lines).
pub fn text(s: &str, keep_newlines: bool) -> String {
    let escapes = |c: char| c.is_control() && !(keep_newlines && c == '\n');
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if !escapes(c) {
            out.push(c);
            continue;
        }
        out.push_str("$'");
        push_escape(&mut out, c);
        while let Some(c) = chars.next_if(|c| escapes(*c)) {
            push_escape(&mut out, c);
        }
        out.push('\'');
    }
    out
}

/// Where a character of a shell script stands, as a POSIX shell reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Plain,
    Single,
    Double,
    Comment,
}

/// The quoting each character of `chars` stands in (the state before it is read).
fn quoting(chars: &[char]) -> Vec<Quoting> {
    use Quoting::*;
    let mut states = Vec::with_capacity(chars.len());
    let mut q = Plain;
    let mut escaped = false;
    let mut word_start = true;
    for &c in chars {
        states.push(q);
        if escaped {
            escaped = false;
            word_start = false;
            continue;
        }
        match (q, c) {
            (Comment, '\n') => q = Plain,
            (Single, '\'') | (Double, '"') => q = Plain,
            (Double, '\\') | (Plain, '\\') => escaped = true,
            (Plain, '\'') => q = Single,
            (Plain, '"') => q = Double,
            (Plain, '#') if word_start => q = Comment,
            _ => {}
        }
        word_start = q == Plain
            && matches!(
                c,
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
            );
    }
    states
}

/// A shell script or command line (the onstart script, a Docker-options string): as
/// [`text`], but each run of control characters is written so that it reads as shell where
/// it stands: inside single quotes the quotes close and reopen around it (`'a<CR>b'` shows
/// as `'a'$'\r''b'`, as `ls` shows such a name), inside double quotes likewise with `"`,
/// elsewhere it is `$'\r'`. Quotes are followed as a POSIX shell reads them (backslashes,
/// comments); where the shell would read it otherwise, the run is shown the plain way, but
/// every control character is escaped all the same. With `keep_newlines`, `\n` stays.
pub fn script(s: &str, keep_newlines: bool) -> String {
    let escapes = |c: char| c.is_control() && !(keep_newlines && c == '\n');
    let chars: Vec<char> = s.chars().collect();
    let states = quoting(&chars);
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if !escapes(chars[i]) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && escapes(chars[i]) {
            i += 1;
        }
        let mut run = String::from("$'");
        for &c in &chars[start..i] {
            push_escape(&mut run, c);
        }
        run.push('\'');
        let quote = match states[start] {
            Quoting::Single => '\'',
            Quoting::Double => '"',
            Quoting::Plain | Quoting::Comment => {
                out.push_str(&run);
                continue;
            }
        };
        // Close the quotes before the run (or take back the one that just opened them),
        // and reopen them after it (unless they close right there).
        if start > 0 && chars[start - 1] == quote && states[start - 1] == Quoting::Plain {
            out.pop();
        } else {
            out.push(quote);
        }
        out.push_str(&run);
        if i < chars.len() && chars[i] == quote && states[i] == states[start] {
            i += 1;
        } else {
            out.push(quote);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What bash makes of `shown` (a word or a command line), if bash is here.
    fn bash_reads(shown: &str) -> Option<Vec<String>> {
        let script = format!("for a in {shown}; do printf '%s\\0' \"$a\"; done");
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .env("LC_ALL", "C.UTF-8")
            .output()
            .ok()?;
        assert!(out.status.success(), "{shown}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut words: Vec<String> = text.split('\0').map(str::to_string).collect();
        words.pop();
        Some(words)
    }

    fn every_control() -> String {
        (0u32..0x20)
            .chain(0x7f..0xa0)
            .filter_map(char::from_u32)
            .collect()
    }

    #[test]
    fn nothing_to_escape_is_left_alone() {
        for s in ["", "plain", "a b 'c' \"d\" $e \\f", "ünïcødé ✓"] {
            assert_eq!(word(s), s);
            assert_eq!(text(s, false), s);
            assert_eq!(script(s, false), s);
        }
        assert_eq!(text("two\nlines\n", true), "two\nlines\n");
        assert_eq!(sh_word("a b"), "'a b'");
    }

    #[test]
    fn words_show_as_a_shell_quotes_them() {
        assert_eq!(word("a\rb"), "$'a\\rb'");
        assert_eq!(
            word("\t\u{1b}[31m\u{7f}\u{85}\u{1}"),
            "$'\\t\\e[31m\\x7f\\u0085\\x01'"
        );
        assert_eq!(word("it's \\\n"), "$'it\\'s \\\\\\n'");
        assert_eq!(sh_word("a\rb"), "$'a\\rb'");
        // bash reads each back as exactly the value.
        let values = [
            "a\rb".to_string(),
            "it's\t\"odd\" \\ $HOME\n".to_string(),
            every_control().replace('\0', ""),
            format!("x{}y", every_control().replace('\0', "")),
        ];
        for v in &values {
            let shown = word(v).into_owned();
            assert!(!has_controls(&shown), "{shown:?}");
            if let Some(got) = bash_reads(&shown) {
                assert_eq!(got, std::slice::from_ref(v), "{shown}");
            }
        }
        let argv: Vec<String> = values.to_vec();
        let shown = sh_join(&argv);
        assert!(!has_controls(&shown));
        if let Some(got) = bash_reads(&shown) {
            assert_eq!(got, argv);
        }
    }

    #[test]
    fn text_escapes_runs_in_place() {
        assert_eq!(text("a\rb", false), "a$'\\r'b");
        assert_eq!(
            text("red\u{1b}[31m!\u{1b}[0m", false),
            "red$'\\e'[31m!$'\\e'[0m"
        );
        assert_eq!(text("\r\n\t", false), "$'\\r\\n\\t'");
        assert_eq!(text("one\r\ntwo\n", true), "one$'\\r'\ntwo\n");
        let all = every_control();
        assert!(!has_controls(&text(&all, false)));
        assert_eq!(text(&all, true).matches('\n').count(), 1);
    }

    #[test]
    fn scripts_show_their_quoted_controls_as_shell_reads_them() {
        // Inside single quotes the quotes close and reopen around the escape, so that the
        // line still reads as the same words.
        let line = "exec p 'a\rb' \"c\td\" e\u{1b}f";
        let shown = script(line, false);
        assert_eq!(shown, "exec p 'a'$'\\r''b' \"c\"$'\\t'\"d\" e$'\\e'f");
        if let Some(got) = bash_reads(&shown["exec p ".len()..]) {
            assert_eq!(got, ["a\rb", "c\td", "e\u{1b}f"]);
        }
        // A comment's apostrophe opens no quote; a backslash-quote opens none either.
        let s = "# the image's command\nexec p 'x\ry' it\\'s\r\n";
        assert_eq!(
            script(s, true),
            "# the image's command\nexec p 'x'$'\\r''y' it\\'s$'\\r'\n"
        );
        // A quoted word over two lines keeps its newline in a block, its quotes followed.
        let s = "exec p 'line\nbreak\r'";
        assert_eq!(script(s, true), "exec p 'line\nbreak'$'\\r'");
        assert_eq!(script(s, false), "exec p 'line'$'\\n''break'$'\\r'");
        // A run at a quoted word's start or end needs no empty quotes beside it.
        assert_eq!(
            script("p '\u{1b}[2J' \"\r\" ''", false),
            "p $'\\e''[2J' $'\\r' ''"
        );
        // Whatever the quoting, nothing raw is left.
        let odd = format!("'\"{}\\", every_control());
        assert!(!has_controls(&script(&odd, false)));
        assert_eq!(script(&odd, true).matches('\n').count(), 1);
    }

    /// The words a template from an image moves into onstart, shown back: bash reads the
    /// shown `exec` line as the very argv.
    #[test]
    fn a_moved_command_line_shows_exactly() {
        let argv: Vec<String> = ["p", "a\rb", "it's", "tab\there", "", "nl\nx"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let line = crate::template::sh_join(&argv);
        let shown = script(&line, false);
        assert!(!has_controls(&shown), "{shown}");
        if let Some(got) = bash_reads(&shown) {
            assert_eq!(got, argv);
        }
    }
}
