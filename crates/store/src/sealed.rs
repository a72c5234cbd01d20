//! Tables of encrypted key/value pairs owned by one row of another table: a connector's
//! secrets, a secret's values. Each value is sealed with the store's key and bound to
//! its owner and key (the AEAD associated data), so a value copied to another row or key
//! does not decrypt.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::Keyring;
use crate::error::Result;

/// One table of sealed values: `table (owner_column, key, value)`.
pub(crate) struct SealedValues {
    /// The table's name.
    pub(crate) table: &'static str,
    /// The column holding the owner's id.
    pub(crate) owner_column: &'static str,
    /// The prefix of each value's associated data, `{prefix}/{owner id}/{key}`.
    pub(crate) aad_prefix: &'static str,
}

impl SealedValues {
    fn aad(&self, owner_id: &str, key: &str) -> String {
        format!("{}/{owner_id}/{key}", self.aad_prefix)
    }

    /// Seals and stores `values` for `owner_id`, replacing values of the same keys.
    pub(crate) fn write(
        &self,
        conn: &Connection,
        keys: &Keyring,
        owner_id: &str,
        values: &BTreeMap<String, SecretString>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {table} ({owner}, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT ({owner}, key) DO UPDATE SET value = excluded.value",
            table = self.table,
            owner = self.owner_column,
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        for (key, value) in values {
            let sealed = keys.encrypt(
                conn,
                &self.aad(owner_id, key),
                value.expose_secret().as_bytes(),
            )?;
            stmt.execute(params![owner_id, key, sealed])?;
        }
        Ok(())
    }

    /// Every value of `owner_id`, decrypted; `describe(key)` names a value in errors.
    pub(crate) fn load(
        &self,
        conn: &Connection,
        keys: &Keyring,
        owner_id: &str,
        describe: impl Fn(&str) -> String,
    ) -> Result<BTreeMap<String, SecretString>> {
        let sql = format!(
            "SELECT key, value FROM {} WHERE {} = ?1",
            self.table, self.owner_column
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([owner_id])?;
        let mut out = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let sealed: Vec<u8> = row.get(1)?;
            let value = keys.decrypt(conn, &self.aad(owner_id, &key), &sealed, &describe(&key))?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: SealedValues = SealedValues {
        table: "things",
        owner_column: "owner_id",
        aad_prefix: "thing",
    };

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE things (owner_id TEXT, key TEXT, value BLOB, PRIMARY KEY (owner_id, key));",
        )
        .unwrap();
        conn
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretString::from(*v)))
            .collect()
    }

    #[test]
    fn writes_replace_by_key_and_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, keys) = (db(), Keyring::new(dir.path(), None).unwrap());
        TABLE
            .write(
                &conn,
                &keys,
                "a",
                &values(&[("user", "u1"), ("password", "p1")]),
            )
            .unwrap();
        TABLE
            .write(&conn, &keys, "a", &values(&[("password", "p2")]))
            .unwrap();
        TABLE
            .write(&conn, &keys, "b", &values(&[("password", "other")]))
            .unwrap();
        let loaded = TABLE.load(&conn, &keys, "a", |k| k.to_owned()).unwrap();
        let plain: Vec<(&str, &str)> = loaded
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        assert_eq!(plain, [("password", "p2"), ("user", "u1")]);
    }

    #[test]
    fn a_value_moved_to_another_owner_does_not_decrypt_and_the_error_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, keys) = (db(), Keyring::new(dir.path(), None).unwrap());
        TABLE
            .write(&conn, &keys, "a", &values(&[("password", "p1")]))
            .unwrap();
        conn.execute("UPDATE things SET owner_id = 'b'", [])
            .unwrap();
        let err = TABLE
            .load(&conn, &keys, "b", |k| format!("value `{k}` of thing `b`"))
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("value `password` of thing `b`"),
            "{message}"
        );
        assert!(!message.contains("p1"), "{message}");
    }
}
