//! API tokens in the shared store: names, roles and the SHA-256 of each secret (never
//! the secret). A revocation is announced on the registry's channel, so every replica
//! re-reads the tokens at once.

use postgres::GenericClient;

/// One stored token: (name, role, created_at, sha256).
pub type Row = (String, String, String, String);

/// Every token in the order they were added.
pub fn list(c: &mut impl GenericClient) -> Result<Vec<Row>, postgres::Error> {
    Ok(c.query(
        "SELECT name, role, created_at, sha256 FROM api_tokens ORDER BY added",
        &[],
    )?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect())
}

/// Whether any token exists.
pub fn any(c: &mut impl GenericClient) -> Result<bool, postgres::Error> {
    c.query_one("SELECT EXISTS (SELECT 1 FROM api_tokens)", &[])
        .map(|r| r.get(0))
}

/// Adds a token; false when the name is taken.
pub fn add(
    c: &mut impl GenericClient,
    name: &str,
    role: &str,
    created_at: &str,
    sha256: &str,
) -> Result<bool, postgres::Error> {
    let n = c.execute(
        "INSERT INTO api_tokens (name, role, created_at, sha256) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING",
        &[&name, &role, &created_at, &sha256],
    )?;
    if n == 1 {
        super::registry::notify(c, "tokens")?;
    }
    Ok(n == 1)
}

/// Removes a token; false when there is none of that name.
pub fn revoke(c: &mut impl GenericClient, name: &str) -> Result<bool, postgres::Error> {
    let n = c.execute("DELETE FROM api_tokens WHERE name = $1", &[&name])?;
    if n == 1 {
        super::registry::notify(c, "tokens")?;
    }
    Ok(n == 1)
}

/// Writes `rows` (a copy of another store's tokens) in their order; false, writing
/// nothing, when the table holds a token already.
pub fn import(c: &mut impl GenericClient, rows: &[Row]) -> Result<bool, postgres::Error> {
    c.execute("LOCK TABLE api_tokens IN EXCLUSIVE MODE", &[])?;
    if any(c)? {
        return Ok(false);
    }
    for (name, role, created_at, sha256) in rows {
        c.execute(
            "INSERT INTO api_tokens (name, role, created_at, sha256) VALUES ($1, $2, $3, $4)",
            &[name, role, created_at, sha256],
        )?;
    }
    if !rows.is_empty() {
        super::registry::notify(c, "tokens")?;
    }
    Ok(true)
}
