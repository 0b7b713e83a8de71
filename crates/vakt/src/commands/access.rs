//! `vakt token ...` and `vakt user ...`: credentials, managed on the machine vakt runs on.

use std::io::BufRead as _;

use anyhow::{Context, anyhow};

use crate::auth::{NewToken, hash_password, mint};
use crate::cli::{Failure, StorageArgs, TokenCommand, UserCommand};
use crate::config::{Config, Overrides};

/// The configuration (with the storage flags applied).
pub(crate) fn config(storage: &StorageArgs) -> Result<Config, Failure> {
    let overrides = Overrides {
        listen: None,
        data_dir: storage.data_dir.clone(),
        database_url: storage.database_url.clone(),
    };
    Config::load(storage.config.config.as_deref(), &overrides).map_err(Failure::user)
}

/// Opens the database the configuration (and flags) name.
async fn open(storage: &StorageArgs) -> Result<std::sync::Arc<dyn vakt_store::Store>, Failure> {
    open_for(&config(storage)?).await
}

pub(crate) async fn open_for(
    config: &Config,
) -> Result<std::sync::Arc<dyn vakt_store::Store>, Failure> {
    vakt_store::open(&config.location)
        .await
        .with_context(|| format!("cannot open storage ({})", config.location.describe()))
        .map_err(Failure::internal)
}

/// A multi-threaded runtime, with `workers` threads (default: one per core).
pub(crate) fn threaded_runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::internal)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::internal)
}

pub fn token(command: TokenCommand) -> Result<(), Failure> {
    runtime()?.block_on(async move {
        match command {
            TokenCommand::Create {
                storage,
                name,
                role,
                scope,
                owner,
                expires,
            } => {
                let now = chrono::Utc::now();
                let expires_at = match expires {
                    None => None,
                    Some(text) => {
                        let secs = super::remote::parse_duration(&text)
                            .map_err(|e| Failure::user(anyhow!("--expires: {e}")))?;
                        Some(
                            i64::try_from(secs)
                                .ok()
                                .and_then(chrono::Duration::try_seconds)
                                .and_then(|d| now.checked_add_signed(d))
                                .ok_or_else(|| {
                                    Failure::user(anyhow!("--expires {text}: too far"))
                                })?,
                        )
                    }
                };
                let new = NewToken {
                    owner: Some(owner.unwrap_or_else(|| name.clone())),
                    name,
                    scopes: role.into_iter().chain(scope).collect(),
                    expires_at,
                };
                let (token, record) = mint(&new, "vakt token create", None, now)
                    .map_err(|e| Failure::user(anyhow!(e)))?;
                let store = open(&storage).await?;
                store
                    .put_token(&record)
                    .await
                    .context("storing the token")
                    .map_err(Failure::internal)?;
                store.close().await;
                eprintln!(
                    "token {:?} for {} ({}){}; it is shown this once:",
                    record.name,
                    record.owner,
                    record.scopes.join(" "),
                    record
                        .expires_at
                        .map(|at| format!(", expires {}", at.to_rfc3339()))
                        .unwrap_or_default()
                );
                println!("{token}");
                Ok(())
            }
            TokenCommand::List { storage, json } => {
                let store = open(&storage).await?;
                let tokens = store
                    .tokens()
                    .await
                    .context("reading the tokens")
                    .map_err(Failure::internal)?;
                store.close().await;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&tokens).unwrap_or_default()
                    );
                } else if tokens.is_empty() {
                    println!("no tokens");
                } else {
                    let now = chrono::Utc::now();
                    for t in tokens {
                        let state = if t.revoked_at.is_some() {
                            "revoked".to_owned()
                        } else if t.expires_at.is_some_and(|at| at <= now) {
                            "expired".to_owned()
                        } else {
                            t.expires_at.map_or_else(
                                || "live".to_owned(),
                                |at| format!("live until {}", at.to_rfc3339()),
                            )
                        };
                        let used = t.last_used_at.map_or_else(
                            || "never used".to_owned(),
                            |at| format!("used {}", at.to_rfc3339()),
                        );
                        println!(
                            "{}  {}  owner {}  [{}]  {}  {}",
                            t.id,
                            t.name,
                            t.owner,
                            t.scopes.join(" "),
                            state,
                            used
                        );
                    }
                }
                Ok(())
            }
            TokenCommand::Revoke { storage, token } => {
                let store = open(&storage).await?;
                let revoked = store
                    .revoke_token(&token, chrono::Utc::now())
                    .await
                    .context("revoking the token")
                    .map_err(Failure::internal)?;
                store.close().await;
                match revoked {
                    Some(t) => {
                        println!("revoked {} ({}): it stops working at once", t.name, t.id);
                        Ok(())
                    }
                    None => Err(Failure::user(anyhow!(
                        "no live token with the id or name {token:?}"
                    ))),
                }
            }
        }
    })
}

/// The first line of standard input, hashed.
fn read_password_hash(example: &str) -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")
        .map_err(Failure::internal)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(Failure::user(anyhow!(
            "no password on standard input ({example})"
        )));
    }
    hash_password(password).map_err(|e| Failure::internal(anyhow!(e)))
}

pub fn user(command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Hash => {
            println!("{}", read_password_hash("vakt user hash < password.txt")?);
            Ok(())
        }
        UserCommand::Passwd { storage, user } => {
            let config = config(&storage)?;
            if config.directory.user(&user).is_none() {
                return Err(Failure::user(anyhow!(
                    "no [[users]] entry with id {user:?} in {}",
                    config.name()
                )));
            }
            let hash = read_password_hash("vakt user passwd NAME < password.txt")?;
            runtime()?.block_on(async {
                let store = open_for(&config).await?;
                store
                    .put_password(&user, &hash, chrono::Utc::now())
                    .await
                    .context("storing the password")
                    .map_err(Failure::internal)?;
                store.close().await;
                eprintln!("the password of {user} is set; it signs in from now on");
                Ok(())
            })
        }
    }
}
