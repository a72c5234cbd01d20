//! Authentication (bearer tokens, client certificates, a validator hook) and a simple
//! rule-based authorizer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// The user name (`admin`, `alice`, `arn:aws:iam::…`).
    pub name: String,
    /// Groups; members of `system:masters` may do anything.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with a name and groups.
    pub fn new(name: impl Into<String>, groups: Vec<String>) -> Self {
        Self {
            name: name.into(),
            groups,
        }
    }

    /// Whether the user is in `system:masters`.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// A hook that accepts bearer tokens the emulator did not issue (for example cloud
/// tokens checked against a fake), returning the user they belong to.
pub type TokenValidator = Arc<dyn Fn(&str) -> Option<UserInfo> + Send + Sync>;

/// One permission rule: the user may use any of `verbs` on any of `resources` in any of
/// `namespaces`. `"*"` matches everything; resources are plurals, optionally with a
/// subresource (`pods/log`); a namespace list containing `"*"` also covers
/// cluster-scoped resources.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    /// Verbs: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or `*`.
    pub verbs: Vec<String>,
    /// Resources (`pods`, `pods/log`, `jobs`, `*`).
    pub resources: Vec<String>,
    /// Namespaces (`*` for all namespaces and cluster-scoped resources).
    pub namespaces: Vec<String>,
}

impl Rule {
    /// A rule from string slices.
    pub fn new(verbs: &[&str], resources: &[&str], namespaces: &[&str]) -> Self {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Self {
            verbs: v(verbs),
            resources: v(resources),
            namespaces: v(namespaces),
        }
    }

    /// Everything, everywhere.
    pub fn all() -> Self {
        Self::new(&["*"], &["*"], &["*"])
    }

    /// Read-only (`get`, `list`, `watch`) on everything in the given namespaces.
    pub fn read_only(namespaces: &[&str]) -> Self {
        Self::new(&["get", "list", "watch"], &["*"], namespaces)
    }

    fn allows(&self, a: &Attributes<'_>) -> bool {
        let any = |list: &[String], x: &str| list.iter().any(|v| v == "*" || v == x);
        let resource = match a.subresource {
            Some(s) => format!("{}/{s}", a.resource),
            None => a.resource.to_string(),
        };
        let ns_ok = match a.namespace {
            Some(ns) => any(&self.namespaces, ns),
            None => self.namespaces.iter().any(|n| n == "*"),
        };
        any(&self.verbs, a.verb) && (any(&self.resources, &resource)) && ns_ok
    }
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attributes<'a> {
    /// The verb.
    pub(crate) verb: &'a str,
    /// The API group (`""`, `batch`).
    pub(crate) group: &'a str,
    /// The resource plural.
    pub(crate) resource: &'a str,
    /// The subresource, if any.
    pub(crate) subresource: Option<&'a str>,
    /// The namespace (`None` for cluster-scoped or all-namespace requests).
    pub(crate) namespace: Option<&'a str>,
    /// The object name, if any.
    #[allow(dead_code)]
    pub(crate) name: Option<&'a str>,
}

/// The users, credentials and rules of a cluster.
#[derive(Default)]
pub(crate) struct AuthState {
    tokens: RwLock<HashMap<String, UserInfo>>,
    certs: RwLock<HashMap<Vec<u8>, UserInfo>>,
    passwords: RwLock<HashMap<String, (String, UserInfo)>>,
    revoked: RwLock<HashSet<String>>,
    user_rules: RwLock<HashMap<String, Vec<Rule>>>,
    group_rules: RwLock<HashMap<String, Vec<Rule>>>,
    validator: RwLock<Option<TokenValidator>>,
}

/// Why authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    NoCredentials,
    BadToken,
}

impl AuthState {
    pub(crate) fn add_token(&self, token: String, user: UserInfo) {
        self.tokens.write().insert(token, user);
    }

    pub(crate) fn add_password(&self, username: String, password: String, user: UserInfo) {
        self.passwords.write().insert(username, (password, user));
    }

    pub(crate) fn add_cert(&self, der: Vec<u8>, user: UserInfo) {
        self.certs.write().insert(der, user);
    }

    pub(crate) fn revoke_token(&self, token: &str) {
        self.revoked.write().insert(token.to_string());
    }

    pub(crate) fn set_validator(&self, v: Option<TokenValidator>) {
        *self.validator.write() = v;
    }

    pub(crate) fn set_user_rules(&self, user: &str, rules: Vec<Rule>) {
        self.user_rules.write().insert(user.to_string(), rules);
    }

    pub(crate) fn set_group_rules(&self, group: &str, rules: Vec<Rule>) {
        self.group_rules.write().insert(group.to_string(), rules);
    }

    /// Authenticates a request: a bearer token or basic-auth credentials (which must be
    /// valid if present), else the verified client certificate.
    pub(crate) fn authenticate(
        &self,
        bearer: Option<&str>,
        basic: Option<(&str, &str)>,
        cert: Option<&[u8]>,
    ) -> Result<UserInfo, AuthFailure> {
        if let Some((username, password)) = basic {
            return match self.passwords.read().get(username) {
                Some((expected, user)) if expected == password => Ok(user.clone()),
                _ => Err(AuthFailure::BadToken),
            };
        }
        if let Some(token) = bearer {
            if self.revoked.read().contains(token) {
                return Err(AuthFailure::BadToken);
            }
            if let Some(u) = self.tokens.read().get(token) {
                return Ok(u.clone());
            }
            let validator = self.validator.read().clone();
            if let Some(v) = validator
                && let Some(u) = v(token)
            {
                return Ok(u);
            }
            return Err(AuthFailure::BadToken);
        }
        if let Some(der) = cert
            && let Some(u) = self.certs.read().get(der)
        {
            return Ok(u.clone());
        }
        Err(AuthFailure::NoCredentials)
    }

    /// Whether `user` may do `a`.
    pub(crate) fn authorize(&self, user: &UserInfo, a: &Attributes<'_>) -> bool {
        if user.is_master() {
            return true;
        }
        if let Some(rules) = self.user_rules.read().get(&user.name)
            && rules.iter().any(|r| r.allows(a))
        {
            return true;
        }
        let groups = self.group_rules.read();
        user.groups
            .iter()
            .filter_map(|g| groups.get(g))
            .any(|rules| rules.iter().any(|r| r.allows(a)))
    }
}

/// The real API server's forbidden message tail:
/// `User "u" cannot list resource "pods" in API group "" in the namespace "default"`.
pub(crate) fn forbidden_message(user: &UserInfo, a: &Attributes<'_>) -> String {
    let resource = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let scope = match a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    )
}

impl AuthState {
    /// The rules that apply to a user (its own and its groups').
    pub(crate) fn rules_for(&self, user: &UserInfo) -> Vec<Rule> {
        let mut out: Vec<Rule> = self
            .user_rules
            .read()
            .get(&user.name)
            .cloned()
            .unwrap_or_default();
        let groups = self.group_rules.read();
        for g in &user.groups {
            if let Some(r) = groups.get(g) {
                out.extend(r.iter().cloned());
            }
        }
        out
    }
}
