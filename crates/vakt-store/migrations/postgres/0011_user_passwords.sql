-- vakt schema 11 (PostgreSQL): passwords set with `vakt user passwd`, kept only as argon2id
-- hashes; they take precedence over a [[users]] entry's password_hash.
CREATE TABLE user_passwords (
    user_id    TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
