//! `--ignore-user`: audit events of these users (vigil's own service account by default) are dropped before the
//! engine, so a rule can never feed on vigil's own writes.

use std::collections::HashSet;

use crate::eql::Node;

/// Where [`IgnoredUsers::ignores`] reads in a raw audit event.
const USERNAME_PATH: [&str; 2] = ["user", "username"];

#[derive(Debug, Clone, Default)]
pub struct IgnoredUsers {
    names: HashSet<String>,
}

impl IgnoredUsers {
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        IgnoredUsers {
            names: names.into_iter().filter(|name| !name.is_empty()).collect(),
        }
    }

    /// What [`ignores`](Self::ignores) reads of an event, for a reader that keeps only some of it.
    pub fn path_read() -> Vec<String> {
        USERNAME_PATH.map(str::to_owned).to_vec()
    }

    /// Whether `event` (a raw audit event) was made by an ignored user.
    pub fn ignores(&self, event: &dyn Node) -> bool {
        let [user, username] = USERNAME_PATH;
        !self.names.is_empty()
            && event
                .get(user)
                .and_then(|user| user.get(username))
                .and_then(|name| name.as_str())
                .is_some_and(|name| self.names.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ignores_only_the_named_users() {
        let ignored = IgnoredUsers::new(["system:serviceaccount:vigil:vigil".to_string()]);
        assert!(
            ignored.ignores(&json!({"user": {"username": "system:serviceaccount:vigil:vigil"}}))
        );
        assert!(!ignored.ignores(&json!({"user": {"username": "alice"}})));
        assert!(!ignored.ignores(&json!({"verb": "get"})));
        assert!(!IgnoredUsers::default().ignores(&json!({"user": {"username": ""}})));
    }
}
