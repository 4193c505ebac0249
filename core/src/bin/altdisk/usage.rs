//! clap's own errors (an unknown flag, a flag given twice, a missing value) as altdisk's
//! errors: one line saying what, why and what to do, with exit status 2 (bad usage), under
//! whichever name the program was called by. clap would print several lines (the error, a
//! usage line, a tip); a script reading stderr, and a person, get one.

use clap::error::{ContextKind, ContextValue, ErrorKind};

use altdisk::error::Error;

/// The text of one piece of clap's error context.
fn get(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) if !v.is_empty() => Some(v.join(", ")),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::StyledStrs(v) if !v.is_empty() => {
            Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "))
        }
        ContextValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `-d <TARGETS>` -> `-d`: the flag as the user typed it.
fn flag(arg: &str) -> String {
    arg.split(' ').next().unwrap_or(arg).to_string()
}

/// The usage error for a clap error of program `prog`.
pub fn from_clap(prog: &str, e: &clap::Error) -> Error {
    let help = format!("see `{prog} --help`");
    let arg = get(e, ContextKind::InvalidArg);
    let value = get(e, ContextKind::InvalidValue);
    let (what, why, todo) = match e.kind() {
        ErrorKind::UnknownArgument => {
            let a = arg.unwrap_or_default();
            let todo = match (get(e, ContextKind::SuggestedArg), get(e, ContextKind::SuggestedSubcommand)) {
                (Some(s), _) | (None, Some(s)) => format!("did you mean {s}? {help}"),
                _ if a.starts_with('-') => help,
                _ => format!("flags take their values right after them; {help}"),
            };
            let why = if a.starts_with('-') {
                format!("{prog} has no such flag")
            } else {
                format!("{prog} takes no such argument here")
            };
            (format!("`{a}`"), why, todo)
        }
        ErrorKind::InvalidSubcommand => {
            let sub = get(e, ContextKind::InvalidSubcommand).unwrap_or_default();
            let todo = match get(e, ContextKind::SuggestedSubcommand) {
                Some(s) => format!("did you mean `{prog} {s}`? {help}"),
                None => help,
            };
            (format!("`{sub}`"), format!("{prog} has no such command"), todo)
        }
        ErrorKind::ArgumentConflict => {
            let a = flag(&arg.unwrap_or_default());
            match get(e, ContextKind::PriorArg).map(|p| flag(&p)) {
                Some(p) if p == a => (a, "it was given more than once".into(), "give it once".into()),
                Some(p) => (format!("{a} with {p}"), "they cannot be used together".into(), "drop one of them".into()),
                None => (a, "it cannot be used with the other flags given".into(), help),
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let a = flag(&arg.unwrap_or_default());
            let v = value.unwrap_or_default();
            if v.is_empty() {
                (a.clone(), "it needs a value and none was given".into(), format!("give one: {a} VALUE; {help}"))
            } else {
                let why = match std::error::Error::source(e) {
                    Some(s) => format!("`{v}` is not a valid value: {s}"),
                    None => format!("`{v}` is not a valid value"),
                };
                let todo = match get(e, ContextKind::ValidValue) {
                    Some(valid) => format!("use one of: {valid}"),
                    None => help,
                };
                (a, why, todo)
            }
        }
        ErrorKind::NoEquals => {
            let a = flag(&arg.unwrap_or_default());
            (a.clone(), "its value must follow an equals sign".into(), format!("write {a}=VALUE"))
        }
        ErrorKind::TooManyValues | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            let a = flag(&arg.unwrap_or_default());
            (a, "it was given the wrong number of values".into(), help)
        }
        ErrorKind::MissingRequiredArgument => {
            let a = arg.unwrap_or_default();
            (format!("{prog} {a}"), "a required argument is missing".into(), format!("add it; {help}"))
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => (
            "the command line".to_string(),
            "no command was given".into(),
            format!("name one, such as `{prog} lspv` or `{prog} copy -d DISK`; {help}"),
        ),
        ErrorKind::InvalidUtf8 => (
            "an argument".to_string(),
            "an argument is not valid UTF-8 text".into(),
            "give names in UTF-8 (paths with other bytes cannot be named yet)".into(),
        ),
        _ => {
            // Whatever clap says, on one line, without its "error: " prefix.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
            ("the command line".to_string(), first, help)
        }
    };
    Error::usage(what, why, todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(prog: &str, args: &[&str]) -> String {
        let mut argv = vec![prog];
        argv.extend_from_slice(args);
        let e = crate::program(prog).try_get_matches_from(argv).map(|_| ()).unwrap_err();
        let u = from_clap(prog, &e);
        assert_eq!(u.exit_code(), 2);
        let s = u.to_string();
        assert!(!s.contains('\n'), "one line: {s}");
        s
    }

    #[test]
    fn clap_errors_are_one_line() {
        assert_eq!(
            err("alt_disk_copy", &["--frce"]),
            "`--frce`: alt_disk_copy has no such flag; did you mean --force? see `alt_disk_copy --help`"
        );
        assert_eq!(
            err("alt_disk_copy", &["-d", "sdb", "-i", "/a", "-i", "/b"]),
            "-i: it was given more than once; give it once"
        );
        assert_eq!(err("alt_disk_copy", &["-B", "-B"]), "-B: it was given more than once; give it once");
        assert_eq!(
            err("alt_disk_copy", &["-d"]),
            "-d: it needs a value and none was given; give one: -d VALUE; see `alt_disk_copy --help`"
        );
        assert_eq!(
            err("alt_disk_copy", &["--trial", "-B"]),
            "--trial with -B: they cannot be used together; drop one of them"
        );
        assert!(err("altdisk", &["lsvp"]).contains("did you mean `altdisk lspv`?"));
        assert!(err("altdisk", &[]).starts_with("the command line: no command was given;"));
        assert!(err("bootlist", &["-q"]).starts_with("`-q`: bootlist has no such flag"));
        assert!(err("alt_rootvg_op", &["-S", "extra"]).starts_with("`extra`: alt_rootvg_op takes no such argument"));
    }
}
