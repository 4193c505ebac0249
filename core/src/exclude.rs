//! placeholder until the real module lands
use crate::error::Result;
#[derive(Debug, Clone, Default)]
pub struct ExcludeList {
    p: Vec<String>,
}
impl ExcludeList {
    pub fn from_file(_path: &std::path::Path) -> Result<Self> {
        Ok(Self::default())
    }
    pub fn empty() -> Self {
        Self::default()
    }
    pub fn is_empty(&self) -> bool {
        self.p.is_empty()
    }
    pub fn len(&self) -> usize {
        self.p.len()
    }
    pub fn is_excluded(&self, _rel: &str) -> bool {
        false
    }
    pub fn patterns(&self) -> &[String] {
        &self.p
    }
}
