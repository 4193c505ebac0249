//! The exclude list of `altdisk -e FILE`, read and matched the way AIX `alt_disk_copy` does it.
//!
//! AIX feeds the names of the files to copy through `grep -v -f FILE`, so the file holds GNU
//! grep basic regular expressions (BRE), one per line, and each is matched anywhere in the name
//! of a file as `find .` prints it: `.` for the root, `./tmp` for a directory (no trailing
//! slash) and `./tmp/x` for what it holds. `^./tmp/` thus leaves out everything under the
//! top-level `/tmp` but keeps `/tmp` itself, and `/scratch/` leaves out the contents of every
//! `scratch` directory. This module owns that file format and promises that a name is excluded
//! exactly when GNU grep would have printed it (checked against grep 3.8 on thousands of random
//! patterns), with these deliberate differences, each safer than grep or failing loudly:
//!
//! - blank and whitespace-only lines are skipped, because to grep they match every name and
//!   would leave the whole system out of the copy;
//! - back-references (`\1`..`\9`) are refused as usage errors, since the regex engine cannot
//!   express them, and so is repeating an anchor or word boundary that follows an atom
//!   (`a\b*`), which grep accepts but matches erratically;
//! - POSIX classes such as `[[:alpha:]]` match ASCII only;
//! - a name holding a newline is matched as one string, where grep matches each line of it.
//!
//! As in grep, lines starting with `#` are patterns, not comments, spaces around a pattern are
//! part of it, and `*` `\+` `\?` `\{` are literal where only anchors precede them since the start
//! of the pattern, a group or an alternative (`*a`, `^*`, `\(*`, `\<*`). A trailing carriage
//! return is dropped so that lists edited on other systems still work.

use std::path::Path;

use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::error::{Error, IoContext, Result};

/// Compiled patterns of one exclude list; cheap to query for every file of a copy.
#[derive(Debug, Clone)]
pub struct ExcludeList {
    matcher: Matcher,
    patterns: Vec<String>,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// One pass over the name for all patterns: the usual case.
    Set(RegexSet),
    /// Lists too large to compile as one automaton are matched pattern by pattern, slower but
    /// with the same result.
    Each(Vec<Regex>),
}

impl Matcher {
    fn new(translated: &[String], compiled: Vec<Regex>, size_limit: usize) -> Self {
        match RegexSetBuilder::new(translated).size_limit(size_limit).build() {
            Ok(set) => Matcher::Set(set),
            Err(_) => Matcher::Each(compiled),
        }
    }
}

impl Default for ExcludeList {
    fn default() -> Self {
        Self::empty()
    }
}

impl ExcludeList {
    /// Reads and compiles the exclude list at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(
                    format!("exclude list {} (-e)", path.display()),
                    "no such file",
                    "check the path, or leave -e out",
                ))
            }
            r => r.ctx("reading the exclude list", path)?,
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::usage(
                format!("exclude list {}", path.display()),
                format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
                "save the file as UTF-8 text",
            )
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Compiles the patterns in `text`; `origin` names the file in errors, which read
    /// "exclude list ORIGIN line N: ...".
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut patterns = Vec::new();
        let mut translated = Vec::new();
        let mut compiled = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let what = format!("exclude list {origin} line {}", index + 1);
            let regex = bre_to_regex(line).map_err(|problem| problem.into_error(&what, line))?;
            // Compiling each pattern alone pins an engine failure to its line; the set below
            // cannot say which member it choked on.
            let one = Regex::new(&regex).map_err(|e| BreError::Invalid(engine_reason(&e)).into_error(&what, line))?;
            patterns.push(line.to_string());
            translated.push(regex);
            compiled.push(one);
        }
        Ok(ExcludeList { matcher: Matcher::new(&translated, compiled, SET_SIZE_LIMIT), patterns })
    }

    /// A list that excludes nothing, for when `-e` was not given.
    pub fn empty() -> Self {
        ExcludeList { matcher: Matcher::Set(RegexSet::empty()), patterns: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether the file named `rel` (as `find .` prints it: `.`, `./etc`, `./etc/hosts`) is
    /// left out of the copy.
    pub fn is_excluded(&self, rel: &str) -> bool {
        match &self.matcher {
            Matcher::Set(set) => set.is_match(rel),
            Matcher::Each(regexes) => regexes.iter().any(|r| r.is_match(rel)),
        }
    }

    /// The patterns as written in the file, in order, without skipped blank lines.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

fn engine_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => format!("too large for the regex engine (limit {limit} bytes)"),
        // Our translation should always be valid syntax; if it is not, the first line of the
        // engine's message is the useful part.
        other => other.to_string().lines().next().unwrap_or("rejected by the regex engine").to_lowercase(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BreError {
    Invalid(String),
    BackReference(char),
}

impl BreError {
    fn invalid(reason: &str) -> Self {
        BreError::Invalid(reason.to_string())
    }

    fn into_error(self, what: &str, pattern: &str) -> Error {
        match self {
            BreError::Invalid(reason) => Error::usage(
                what,
                format!("invalid pattern `{pattern}`: {reason}"),
                "fix the pattern (grep basic regular expression syntax)",
            ),
            BreError::BackReference(digit) => Error::usage(
                what,
                format!("pattern `{pattern}` uses the back-reference `\\{digit}`, which altdisk does not support"),
                "rewrite the pattern without back-references",
            ),
        }
    }
}

/// Memory the combined automaton may take before the list is matched pattern by pattern;
/// a few thousand patterns with Unicode classes such as `\w` fit.
const SET_SIZE_LIMIT: usize = 64 << 20;

/// GNU's RE_DUP_MAX: grep refuses larger counts in `\{m,n\}`.
const DUP_MAX: u32 = 32767;

/// What the previous token leaves for a following `*`, `\+`, `\?` or `\{`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    /// Only zero-width tokens (`^`, `\b`, `\<`, `\``...) since the start of the pattern, of a
    /// group or of an alternative: a repetition operator here is a literal character. This is
    /// GNU dfa.c's `laststart`, which grep's matching follows.
    Nothing,
    /// A zero-width token after an atom. grep (dfa.c) gives a repetition of it results that
    /// follow no rule we could state (`)\>*` matches nothing), so that is refused.
    Assertion,
    /// An atom that starts at this byte of the output and has or has not been repeated yet.
    /// The regex crate refuses a repetition right after a repetition, so `grouped` says it
    /// must be wrapped in `(?:...)` first.
    Atom { start: usize, grouped: bool },
}

/// Translates one GNU grep basic regular expression into the `regex` crate's syntax.
fn bre_to_regex(pattern: &str) -> std::result::Result<String, BreError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut groups: Vec<usize> = Vec::new();
    let mut prev = Prev::Nothing;
    // `^` is an anchor only where an alternative begins; elsewhere it is an ordinary character.
    let mut alternative_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        let at_alternative_start = std::mem::replace(&mut alternative_start, false);
        match c {
            '\\' => {
                let Some(&next) = chars.get(i) else {
                    return Err(BreError::invalid("trailing backslash"));
                };
                i += 1;
                match next {
                    '(' => {
                        groups.push(out.len());
                        out.push_str("(?:");
                        prev = Prev::Nothing;
                        alternative_start = true;
                    }
                    ')' => {
                        let start = groups.pop().ok_or_else(|| BreError::invalid("unmatched \\)"))?;
                        out.push(')');
                        prev = Prev::Atom { start, grouped: false };
                    }
                    '|' => {
                        out.push('|');
                        prev = Prev::Nothing;
                        alternative_start = true;
                    }
                    '{' if prev != Prev::Nothing => {
                        let (repeat, after) = parse_interval(&chars, i)?;
                        i = after;
                        apply_repeat(&mut out, &mut prev, &repeat)?;
                    }
                    '+' | '?' if prev != Prev::Nothing => apply_repeat(&mut out, &mut prev, &next.to_string())?,
                    '1'..='9' => return Err(BreError::BackReference(next)),
                    'w' | 'W' | 's' | 'S' => {
                        prev = Prev::Atom { start: out.len(), grouped: false };
                        out.push('\\');
                        out.push(next);
                    }
                    'b' | 'B' | '<' | '>' | '`' | '\'' => {
                        let assertion = match next {
                            'b' => r"\b",
                            'B' => r"\B",
                            '<' => r"\b{start}",
                            '>' => r"\b{end}",
                            '`' => r"\A",
                            _ => r"\z",
                        };
                        push_assertion(&mut out, &mut prev, assertion);
                    }
                    // Any other escaped character stands for itself (`\.`, `\*`, `\/`, and
                    // `\{ \} \+ \?` where nothing precedes them); grep agrees, warning at most.
                    literal => push_literal(&mut out, &mut prev, literal),
                }
            }
            '[' => {
                let (class, after) = parse_bracket(&chars, i)?;
                i = after;
                prev = Prev::Atom { start: out.len(), grouped: false };
                out.push_str(&class);
            }
            '.' => {
                prev = Prev::Atom { start: out.len(), grouped: false };
                out.push('.');
            }
            '*' if prev != Prev::Nothing => apply_repeat(&mut out, &mut prev, "*")?,
            '^' if at_alternative_start => push_assertion(&mut out, &mut prev, "^"),
            '$' if ends_alternative(&chars, i) => push_assertion(&mut out, &mut prev, "$"),
            literal => push_literal(&mut out, &mut prev, literal),
        }
    }
    if !groups.is_empty() {
        return Err(BreError::invalid("unmatched \\("));
    }
    Ok(out)
}

/// `$` is an anchor at the end of the pattern or right before `\)` or `\|`. grep's dfa.c also
/// reads it as one before an unescaped `|` or `)` in some patterns (`a$|x` never matches
/// while `$|` matches "$|"); that quirk is not reproduced: there `$` is literal, as in glibc.
fn ends_alternative(chars: &[char], i: usize) -> bool {
    match chars.get(i) {
        None => true,
        Some('\\') => matches!(chars.get(i + 1), Some(')') | Some('|')),
        Some(_) => false,
    }
}

/// A zero-width token keeps a following repetition literal where nothing but zero-width
/// tokens precede it, as in grep; elsewhere it leaves nothing that may be repeated.
fn push_assertion(out: &mut String, prev: &mut Prev, assertion: &str) {
    if *prev != Prev::Nothing {
        *prev = Prev::Assertion;
    }
    out.push_str(assertion);
}

fn push_literal(out: &mut String, prev: &mut Prev, c: char) {
    *prev = Prev::Atom { start: out.len(), grouped: false };
    let mut buf = [0u8; 4];
    out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

fn apply_repeat(out: &mut String, prev: &mut Prev, operator: &str) -> std::result::Result<(), BreError> {
    match *prev {
        Prev::Atom { start, grouped } => {
            // grep allows `a**` and `a*\{2\}`; the regex crate wants the inner repetition grouped.
            if grouped {
                out.insert_str(start, "(?:");
                out.push(')');
            }
            out.push_str(operator);
            *prev = Prev::Atom { start, grouped: true };
            Ok(())
        }
        Prev::Assertion => Err(BreError::invalid("repeating an anchor or word boundary is not supported")),
        // Callers handle the literal case before asking for a repetition.
        Prev::Nothing => Err(BreError::invalid("repetition with nothing to repeat")),
    }
}

/// Parses the inside of `\{m,n\}` starting after `\{`; returns the regex repetition and the
/// index after `\}`.
fn parse_interval(chars: &[char], start: usize) -> std::result::Result<(String, usize), BreError> {
    let mut i = start;
    let mut body = String::new();
    loop {
        match chars.get(i) {
            None => return Err(BreError::invalid("unmatched \\{")),
            Some('\\') if chars.get(i + 1) == Some(&'}') => break,
            Some(&c) => body.push(c),
        }
        i += 1;
    }
    let bad = || BreError::invalid("invalid content of \\{\\}");
    let number = |text: &str| -> std::result::Result<Option<u32>, BreError> {
        if text.is_empty() {
            return Ok(None);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // Anything too long for u32 is far past DUP_MAX anyway.
        let n = text.parse::<u32>().unwrap_or(u32::MAX);
        if n > DUP_MAX {
            return Err(BreError::invalid(&format!("repetition count larger than {DUP_MAX}")));
        }
        Ok(Some(n))
    };
    let repeat = match body.split_once(',') {
        None => format!("{{{}}}", number(&body)?.ok_or_else(bad)?),
        Some((low, high)) => {
            let low = number(low)?.unwrap_or(0);
            match number(high)? {
                None => format!("{{{low},}}"),
                Some(high) if high < low => return Err(bad()),
                Some(high) => format!("{{{low},{high}}}"),
            }
        }
    };
    Ok((repeat, i + 2))
}

/// One member of a bracket expression before it is written out.
enum Member {
    Char(char),
    Class(String),
}

const POSIX_CLASSES: [&str; 12] =
    ["alnum", "alpha", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space", "upper", "xdigit"];

/// Parses a POSIX bracket expression starting after `[`; returns the regex class and the index
/// after the closing `]`. Backslash is an ordinary character inside brackets in POSIX.
fn parse_bracket(chars: &[char], start: usize) -> std::result::Result<(String, usize), BreError> {
    let unmatched = || BreError::invalid("unmatched [");
    let mut i = start;
    let mut out = String::from("[");
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let c = *chars.get(i).ok_or_else(unmatched)?;
        // `]` right after `[` or `[^` is a member, not the end.
        if c == ']' && !first {
            out.push(']');
            return Ok((out, i + 1));
        }
        first = false;
        let (member, after) = parse_member(chars, i)?;
        i = after;
        let low = match member {
            Member::Class(name) => {
                out.push_str(&format!("[:{name}:]"));
                if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                    return Err(BreError::invalid("invalid range end"));
                }
                continue;
            }
            Member::Char(low) => low,
        };
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
            let (end, after) = parse_member(chars, i + 1)?;
            i = after;
            let high = match end {
                Member::Char(high) if high >= low => high,
                _ => return Err(BreError::invalid("invalid range end")),
            };
            // GNU refuses `[a-c-e]`: a range cannot start where another ended.
            if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                return Err(BreError::invalid("invalid range end"));
            }
            push_class_char(&mut out, low);
            out.push('-');
            push_class_char(&mut out, high);
        } else {
            push_class_char(&mut out, low);
        }
    }
}

/// Parses one bracket member at `i`: a character, `[:class:]`, `[=c=]` or `[.c.]`.
fn parse_member(chars: &[char], i: usize) -> std::result::Result<(Member, usize), BreError> {
    let c = *chars.get(i).ok_or_else(|| BreError::invalid("unmatched ["))?;
    let kind = match (c, chars.get(i + 1)) {
        ('[', Some(&k @ (':' | '=' | '.'))) => k,
        _ => return Ok((Member::Char(c), i + 1)),
    };
    let body_start = i + 2;
    let end = (body_start..chars.len().saturating_sub(1))
        .find(|&j| chars[j] == kind && chars[j + 1] == ']')
        .ok_or_else(|| BreError::invalid("unmatched ["))?;
    let body: String = chars[body_start..end].iter().collect();
    let after = end + 2;
    if kind == ':' {
        if POSIX_CLASSES.contains(&body.as_str()) {
            return Ok((Member::Class(body), after));
        }
        return Err(BreError::invalid(&format!("invalid character class name `{body}`")));
    }
    // Only single characters are collating elements in the locales grep runs in here.
    let mut body_chars = body.chars();
    match (body_chars.next(), body_chars.next()) {
        (Some(single), None) => Ok((Member::Char(single), after)),
        _ => Err(BreError::invalid("invalid collation character")),
    }
}

/// Writes a character that is literal in a POSIX bracket so that the regex crate reads it
/// literally too: `\`, `[`, `]`, `^`, `-` and the set operators `&&`, `--`, `~~` are special
/// there, so all ASCII punctuation is escaped.
fn push_class_char(out: &mut String, c: char) {
    if c.is_ascii_punctuation() {
        out.push('\\');
        out.push(c);
    } else if c.is_ascii_control() || c == ' ' {
        out.push_str(&format!("\\x{{{:X}}}", c as u32));
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &str) -> ExcludeList {
        match ExcludeList::parse(patterns, "/etc/exclude.rootvg") {
            Ok(list) => list,
            Err(e) => panic!("{patterns:?} should parse: {e}"),
        }
    }

    fn excluded(patterns: &str, name: &str) -> bool {
        list(patterns).is_excluded(name)
    }

    fn error(patterns: &str) -> String {
        match ExcludeList::parse(patterns, "/etc/exclude.rootvg") {
            Ok(l) => panic!("{patterns:?} should be rejected, got {:?}", l.matcher),
            Err(e) => {
                assert!(matches!(e, Error::Usage { .. }), "{e:?}");
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
        }
    }

    #[test]
    fn aix_tmp_example_excludes_contents_only() {
        let l = list("^./tmp/\n");
        assert!(l.is_excluded("./tmp/x"));
        assert!(l.is_excluded("./tmp/a/b/c"));
        assert!(!l.is_excluded("./tmp"));
        assert!(!l.is_excluded("."));
        assert!(!l.is_excluded("./var/tmp/x"));
        assert!(!l.is_excluded("./tmpfoo/x"));
    }

    #[test]
    fn aix_dot_after_caret_matches_any_char() {
        // Unescaped `.` is "any character", so `^./tmp/` also takes `Xtmp/` at the start; grep
        // does the same and names always start with `./` anyway.
        assert!(excluded("^./tmp/", "X/tmp/y"));
        assert!(!excluded("^\\./tmp/", "X/tmp/y"));
        assert!(excluded("^\\./tmp/", "./tmp/y"));
    }

    #[test]
    fn aix_scratch_example_matches_anywhere() {
        let l = list("/scratch/");
        assert!(l.is_excluded("./home/bob/scratch/big.iso"));
        assert!(l.is_excluded("./scratch/x"));
        assert!(!l.is_excluded("./home/bob/scratch"));
        assert!(!l.is_excluded("./home/bob/scratchpad/x"));
    }

    #[test]
    fn anchored_at_both_ends() {
        let l = list("^./home/bob$");
        assert!(l.is_excluded("./home/bob"));
        assert!(!l.is_excluded("./home/bob/x"));
        assert!(!l.is_excluded("./home/bobby"));
        assert!(!l.is_excluded("./x/home/bob"));
    }

    #[test]
    fn several_patterns_any_match_counts() {
        let l = list("^./tmp/\n/scratch/\n\\.iso$\n");
        assert_eq!(l.len(), 3);
        assert!(l.is_excluded("./tmp/a"));
        assert!(l.is_excluded("./srv/scratch/a"));
        assert!(l.is_excluded("./srv/cd.iso"));
        assert!(!l.is_excluded("./srv/cd.iso.bak"));
        assert!(!l.is_excluded("./etc/hosts"));
    }

    #[test]
    fn bre_plus_question_paren_bar_braces_are_literal() {
        // Checked with GNU grep 3.8: unescaped + ? ( ) | { } match themselves in a BRE.
        assert!(excluded("a+b", "./a+b"));
        assert!(!excluded("a+b", "./aab"));
        assert!(excluded("a?b", "./a?b"));
        assert!(!excluded("a?b", "./b"));
        assert!(excluded("(x)", "./f(x)"));
        assert!(!excluded("(x)", "./x"));
        assert!(excluded("a|b", "./a|b"));
        assert!(!excluded("a|b", "./a"));
        assert!(excluded("a{2}", "./a{2}"));
        assert!(!excluded("a{2}", "./aa"));
    }

    #[test]
    fn escaped_operators() {
        assert!(excluded("^./ab\\+c$", "./abbbc"));
        assert!(!excluded("^./ab\\+c$", "./ac"));
        assert!(excluded("^./ab\\?c$", "./ac"));
        assert!(!excluded("^./ab\\?c$", "./abbc"));
        assert!(excluded("^./\\(foo\\|bar\\)$", "./bar"));
        assert!(!excluded("^./\\(foo\\|bar\\)$", "./baz"));
        // Alternation binds loosest, so `^` belongs to the first alternative only.
        assert!(excluded("^./a\\|z", "./xz"));
    }

    #[test]
    fn interval() {
        let l = list("^a\\{2\\}$");
        assert!(l.is_excluded("aa"));
        assert!(!l.is_excluded("a"));
        assert!(!l.is_excluded("aaa"));
        assert!(excluded("^a\\{2,\\}$", "aaaa"));
        assert!(!excluded("^a\\{2,\\}$", "a"));
        assert!(excluded("^a\\{1,2\\}$", "aa"));
        assert!(!excluded("^a\\{1,2\\}$", "aaa"));
        // GNU extension checked with grep: `\{,m\}` is 0 to m.
        assert!(excluded("^a\\{,2\\}b$", "b"));
        assert!(!excluded("^a\\{,2\\}b$", "aaab"));
    }

    #[test]
    fn group_repeated() {
        let l = list("^\\(ab\\)*$");
        assert!(l.is_excluded(""));
        assert!(l.is_excluded("abab"));
        assert!(!l.is_excluded("aba"));
        assert!(excluded("^x\\(ab\\)\\{2\\}$", "xabab"));
        assert!(!excluded("^x\\(ab\\)\\{2\\}$", "xab"));
    }

    #[test]
    fn stacked_repetitions_like_grep() {
        // grep accepts `ab**c` and `a\{1\}\{2\}`; the translation must group the inner one.
        assert!(excluded("^ab**c$", "ac"));
        assert!(excluded("^ab**c$", "abbc"));
        assert!(excluded("^a\\{1\\}\\{2\\}$", "aa"));
        assert!(!excluded("^a\\{1\\}\\{2\\}$", "a"));
        assert!(excluded("^a\\+\\?$", "aaa"));
        assert!(excluded("^\\(\\)*x", "x"));
    }

    #[test]
    fn posix_classes() {
        let l = list("^./log[[:digit:]]$");
        assert!(l.is_excluded("./log7"));
        assert!(!l.is_excluded("./logx"));
        assert!(excluded("[[:digit:]x]", "x"));
        assert!(excluded("^[[:alpha:][:space:]]*$", "ab c"));
        assert!(!excluded("^[[:alpha:]]*$", "ab1"));
        assert!(excluded("^[^[:upper:]]*$", "abc"));
        assert!(!excluded("^[^[:upper:]]*$", "aBc"));
    }

    #[test]
    fn bracket_with_leading_close_bracket() {
        let l = list("[]x]");
        assert!(l.is_excluded("]"));
        assert!(l.is_excluded("x"));
        assert!(!l.is_excluded("y"));
        let l = list("^[^]a]$");
        assert!(l.is_excluded("b"));
        assert!(!l.is_excluded("]"));
        assert!(!l.is_excluded("a"));
    }

    #[test]
    fn bracket_characters_special_to_the_regex_crate_are_literal() {
        // Checked with grep: inside brackets backslash is literal, as are [ & ~ and a dash at
        // either end; `--/` is the range from `-` to `/`.
        let l = list("x[\\.]y");
        assert!(l.is_excluded("x\\y"));
        assert!(l.is_excluded("x.y"));
        assert!(!l.is_excluded("xny"));
        assert!(excluded("^[a[]$", "["));
        assert!(excluded("^[a&&b]$", "&"));
        assert!(!excluded("^[a&&b]$", "c"));
        assert!(excluded("^[~~]$", "~"));
        assert!(excluded("^[--/]$", "."));
        assert!(!excluded("^[--/]$", "a"));
        assert!(excluded("^[a-]$", "-"));
        assert!(excluded("^[-a]$", "-"));
        assert!(excluded("^[a-c]$", "b"));
        assert!(!excluded("^[a-c]$", "d"));
        assert!(excluded("^[ ]$", " "));
        assert!(excluded("^[[.a.]-c]$", "b"));
        assert!(excluded("^[[=a=]]$", "a"));
        assert!(excluded("^[é]$", "é"));
    }

    #[test]
    fn leading_star_is_literal() {
        // Checked with grep: `*` is literal at the start, after `^`, `\(`, `\|` and `\``.
        let l = list("*foo");
        assert!(l.is_excluded("./a*foo"));
        assert!(!l.is_excluded("./afoo"));
        assert!(excluded("^*a", "*a"));
        assert!(!excluded("^*a", "a"));
        assert!(excluded("\\(*a\\)", "*a"));
        assert!(!excluded("\\(*a\\)", "a"));
        assert!(excluded("x\\|*a", "*a"));
        assert!(excluded("\\`*a", "*a"));
        assert!(!excluded("\\`*a", "a"));
    }

    #[test]
    fn repetition_after_zero_width_tokens_like_grep() {
        // Checked with grep: only zero-width tokens before `*` or `\{` keep them literal, so
        // `\b*a` needs a word boundary before a literal `*` and `\>\{` is a literal `{`.
        assert!(excluded("\\b*a", "x*a"));
        assert!(!excluded("\\b*a", "*a"));
        assert!(!excluded("\\b*a", "a"));
        assert!(!excluded("\\<*a", "*a"));
        assert!(excluded("\\>\\{", "x{"));
        assert!(!excluded("\\>\\{", "{"));
        assert!(excluded("\\B\\{", "{"));
        assert!(excluded("^\\B\\+a", "+a"));
        assert!(!excluded("^\\B\\+a", "a"));
    }

    #[test]
    fn leading_interval_plus_question_are_literal() {
        // Checked with grep: `\{2\}a` matches "{2}a", `\+a` matches "+a", and `\}` alone is "}".
        assert!(excluded("\\{2\\}a", "{2}a"));
        assert!(!excluded("\\{2\\}a", "aa"));
        assert!(excluded("\\+a", "+a"));
        assert!(!excluded("\\+a", "a"));
        assert!(excluded("^\\?a", "?a"));
        assert!(excluded("\\(\\{2\\}\\)", "{2}"));
        assert!(excluded("a\\}", "a}"));
    }

    #[test]
    fn dot_matches_any_character() {
        let l = list("^./a.c$");
        assert!(l.is_excluded("./abc"));
        assert!(l.is_excluded("./a.c"));
        assert!(l.is_excluded("./aéc"));
        assert!(!l.is_excluded("./ac"));
        assert!(excluded("^./a\\.c$", "./a.c"));
        assert!(!excluded("^./a\\.c$", "./abc"));
    }

    #[test]
    fn dollar_and_caret_in_the_middle_are_literal() {
        let l = list("a$b");
        assert!(l.is_excluded("./a$b"));
        assert!(!l.is_excluded("./ab"));
        assert!(excluded("a^b", "./a^b"));
        assert!(excluded("^^a", "^a"));
        assert!(!excluded("^^a", "a"));
        // The last `$` is the anchor, the first one literal.
        assert!(excluded("a$$", "xa$"));
        assert!(!excluded("a$$", "xa$y"));
        assert!(excluded("a$*", "a$$"));
    }

    #[test]
    fn anchors_inside_groups_and_alternatives() {
        // Checked with grep: `x\(^a\)` can never match, `\(a$\)x` neither.
        assert!(!excluded("x\\(^a\\)", "xa"));
        assert!(!excluded("x\\(^a\\)", "x^a"));
        assert!(!excluded("\\(a$\\)x", "a$x"));
        assert!(excluded("a$\\|b", "a"));
        assert!(!excluded("a$\\|b", "ax"));
        assert!(excluded("x\\|^a", "ab"));
        assert!(!excluded("x\\|^a", "ba"));
    }

    #[test]
    fn escaped_literals() {
        assert!(excluded("\\*", "./a*"));
        assert!(!excluded("\\*", "./a"));
        assert!(excluded("\\[x\\]", "[x]"));
        assert!(!excluded("\\[x\\]", "x"));
        assert!(excluded("\\^", "a^"));
        assert!(excluded("\\$x", "$x"));
        assert!(excluded("a\\\\b", "a\\b"));
        assert!(excluded("^\\./usr\\/lib", "./usr/lib"));
        // grep reads unknown escapes as the character itself: `\n` is "n", `\0` is "0".
        assert!(excluded("a\\nb", "anb"));
        assert!(excluded("a\\0", "a0"));
    }

    #[test]
    fn gnu_word_and_space_escapes() {
        assert!(excluded("\\<foo", "./a foo"));
        assert!(excluded("\\<foo", "./foo"));
        assert!(!excluded("\\<foo", "./afoo"));
        assert!(excluded("foo\\>", "./foo bar"));
        assert!(!excluded("foo\\>", "./foobar"));
        assert!(excluded("\\bfoo\\b", "./foo"));
        assert!(!excluded("o\\B", "o"));
        assert!(excluded("o\\B", "oo"));
        assert!(excluded("^\\w*$", "abc_1"));
        assert!(!excluded("^\\w*$", "a-b"));
        assert!(excluded("\\W", "a-b"));
        assert!(excluded("\\s", "a b"));
        assert!(!excluded("\\s", "ab"));
        assert!(excluded("^\\S*$", "ab"));
    }

    #[test]
    fn back_reference_rejected_with_file_and_line() {
        let e = error("^./tmp/\n\\(a\\)\\1\n");
        assert_eq!(
            e,
            "exclude list /etc/exclude.rootvg line 2: pattern `\\(a\\)\\1` uses the back-reference `\\1`, \
             which altdisk does not support; rewrite the pattern without back-references"
        );
    }

    #[test]
    fn invalid_patterns_rejected() {
        let cases = [
            ("\\(a", "unmatched \\("),
            ("a\\)", "unmatched \\)"),
            ("[abc", "unmatched ["),
            ("[[:digit:]", "unmatched ["),
            ("[[:alpha]", "unmatched ["),
            ("[[:foo:]]", "invalid character class name `foo`"),
            ("[z-a]", "invalid range end"),
            ("[a-c-e]", "invalid range end"),
            ("[[:alpha:]-z]", "invalid range end"),
            ("[[.space.]]", "invalid collation character"),
            ("a\\{2,1\\}", "invalid content of \\{\\}"),
            ("a\\{x\\}", "invalid content of \\{\\}"),
            ("a\\{\\}", "invalid content of \\{\\}"),
            ("a\\{1, 2\\}", "invalid content of \\{\\}"),
            ("a\\{2", "unmatched \\{"),
            ("a\\{32768\\}", "repetition count larger than 32767"),
            ("a\\", "trailing backslash"),
            ("a\\b*", "repeating an anchor or word boundary is not supported"),
            (")\\>*", "repeating an anchor or word boundary is not supported"),
            ("\\s\\`\\{2\\}", "repeating an anchor or word boundary is not supported"),
            ("\\w\\B\\?", "repeating an anchor or word boundary is not supported"),
        ];
        for (pattern, reason) in cases {
            let e = error(&format!("./ok\n\n{pattern}\n"));
            assert_eq!(
                e,
                format!(
                    "exclude list /etc/exclude.rootvg line 3: invalid pattern `{pattern}`: {reason}; \
                     fix the pattern (grep basic regular expression syntax)"
                ),
            );
        }
    }

    #[test]
    fn blank_lines_skipped_and_crlf_stripped() {
        let l = list("\n   \n^./tmp/\r\n\t\n/scratch/\r\n\n");
        assert_eq!(l.patterns(), ["^./tmp/", "/scratch/"]);
        assert_eq!(l.len(), 2);
        assert!(!l.is_excluded("./etc/hosts"));
        assert!(!l.is_excluded("."));
        assert!(l.is_excluded("./tmp/x"));
        assert!(!list("\n\n").is_excluded("./etc"));
        assert!(list(" \n").is_empty());
    }

    #[test]
    fn hash_lines_are_patterns() {
        let l = list("# keep /tmp\n");
        assert_eq!(l.patterns(), ["# keep /tmp"]);
        assert!(l.is_excluded("./a/# keep /tmp"));
        assert!(!l.is_excluded("./tmp/x"));
    }

    #[test]
    fn surrounding_spaces_are_part_of_the_pattern() {
        // grep keeps them; a stray trailing space thus stops a pattern from matching.
        let l = list("^./tmp/ \n");
        assert_eq!(l.patterns(), ["^./tmp/ "]);
        assert!(!l.is_excluded("./tmp/x"));
        assert!(l.is_excluded("./tmp/ x"));
    }

    #[test]
    fn list_too_large_for_one_automaton_matches_pattern_by_pattern() {
        let l = list("^./tmp/\n\\<core\\.[[:digit:]]\\+$\n");
        assert!(matches!(l.matcher, Matcher::Set(_)));
        let translated: Vec<String> = l.patterns().iter().map(|p| bre_to_regex(p).unwrap()).collect();
        let compiled = translated.iter().map(|r| Regex::new(r).unwrap()).collect();
        let each = ExcludeList { matcher: Matcher::new(&translated, compiled, 1), patterns: l.patterns.clone() };
        assert!(matches!(each.matcher, Matcher::Each(_)));
        for name in [".", "./tmp", "./tmp/x", "./var/crash/core.17", "./var/crash/core.17x", "./var/score.1"] {
            assert_eq!(each.is_excluded(name), l.is_excluded(name), "{name}");
        }
        assert!(each.is_excluded("./tmp/x"));
        assert!(each.is_excluded("./var/crash/core.17"));
        assert!(!each.is_excluded("./var/score.1"));
    }

    #[test]
    fn empty_list() {
        let l = ExcludeList::empty();
        assert!(l.is_empty());
        assert_eq!(l.len(), 0);
        assert!(!l.is_excluded("."));
        assert!(!l.is_excluded("./tmp/x"));
        assert!(l.patterns().is_empty());
        assert!(ExcludeList::default().is_empty());
    }

    #[test]
    fn from_file_reads_and_reports() {
        let dir = std::env::temp_dir().join(format!("altdisk-exclude-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "^./tmp/\n/scratch/\n").unwrap();
        let l = ExcludeList::from_file(&good).unwrap();
        assert_eq!(l.len(), 2);
        assert!(l.is_excluded("./tmp/a"));

        let bad = dir.join("bad");
        std::fs::write(&bad, "ok\n\\(\n").unwrap();
        let e = ExcludeList::from_file(&bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("exclude list {} line 2: invalid pattern `\\(`", bad.display())), "{e}");

        let binary = dir.join("binary");
        std::fs::write(&binary, b"ok\n\xff\n").unwrap();
        let e = ExcludeList::from_file(&binary).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{e:?}");
        assert!(e.to_string().contains("not UTF-8 text"), "{e}");

        let missing = dir.join("missing");
        let e = ExcludeList::from_file(&missing).unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
        assert!(e.to_string().starts_with("exclude list "), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn translation_shapes() {
        let t = |p: &str| bre_to_regex(p).unwrap();
        assert_eq!(t("^./tmp/"), "^./tmp/");
        assert_eq!(t("a+(b)|c{1}?"), r"a\+\(b\)\|c\{1\}\?");
        assert_eq!(t("\\(ab\\)*"), "(?:ab)*");
        assert_eq!(t("a**"), "(?:a*)*");
        assert_eq!(t("[]a-c\\]"), r"[\]a-c\\]");
        assert_eq!(t("\\<x\\>"), r"\b{start}x\b{end}");
        assert_eq!(bre_to_regex("\\(a\\)\\2"), Err(BreError::BackReference('2')));
    }
}
