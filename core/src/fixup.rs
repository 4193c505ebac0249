//! placeholder until the real module lands
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub uuid: Option<String>,
    pub partuuid: Option<String>,
    pub label: Option<String>,
    pub partlabel: Option<String>,
    pub paths: Vec<String>,
}
pub struct Rewrite {
    pub text: String,
    pub changed: usize,
    pub warnings: Vec<String>,
}
pub fn rewrite_fstab(text: &str, _map: &[(Identity, Identity)]) -> Rewrite {
    Rewrite { text: text.into(), changed: 0, warnings: vec![] }
}
pub fn rewrite_crypttab(text: &str, _map: &[(Identity, Identity)]) -> Rewrite {
    Rewrite { text: text.into(), changed: 0, warnings: vec![] }
}
