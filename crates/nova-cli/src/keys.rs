//! `nova keys`: the API keys of tenants. A key is printed once, when it is made; the store keeps only its
//! hash. Keys made or revoked here count at once for servers running on the same store.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use nova_core::ApiKeyId;
use nova_server::RateLimit;

use crate::serve::StoreArgs;

#[derive(Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key for a tenant (created if new) and print it, once. From then on every request to the API
    /// needs a key.
    Create {
        /// The tenant: 1 to 64 characters of a-z, 0-9, `.`, `_`, `-`.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the keys: id, tenant, first characters, when made and revoked.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by its id (`key_...`, as `nova keys list` shows it).
    Revoke {
        id: ApiKeyId,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a tenant a request rate of its own (N/s, N/min or N/h, with ,burst=M), or `default` for the
    /// server's.
    Limit {
        #[arg(long)]
        tenant: String,
        rate: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    crate::serve::runtime()?.block_on(keys(args))
}

async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let (KeysCommand::Create { store, .. }
    | KeysCommand::List { store }
    | KeysCommand::Revoke { store, .. }
    | KeysCommand::Limit { store, .. }) = &args.command;
    // Keys live in the database alone: no blob store is reached.
    let store = store.open_database().await?;
    match args.command {
        KeysCommand::Create { tenant, .. } => {
            if !nova_store::valid_tenant_name(&tenant) {
                bail!("`{tenant}` is not a tenant name: use 1 to 64 characters of a-z, 0-9, `.`, `_`, `-`");
            }
            let key = store.create_key(&tenant).await.context("making the key")?;
            eprintln!("key {} for tenant {} ({}); it is shown only this once:", key.id, key.tenant_name, key.tenant);
            println!("{}", key.secret);
        }
        KeysCommand::List { .. } => {
            let keys = store.list_keys().await.context("reading the keys")?;
            if keys.is_empty() {
                eprintln!("no keys: the API answers loopback clients only (make one with `nova keys create`)");
            }
            for key in keys {
                let revoked = key.revoked_at.map_or_else(String::new, |at| format!("  revoked {}", at.to_rfc3339()));
                println!(
                    "{}  {}  {}...  made {}{revoked}",
                    key.id,
                    key.tenant_name,
                    key.shown,
                    key.created_at.to_rfc3339()
                );
            }
        }
        KeysCommand::Revoke { id, .. } => {
            if !store.revoke_key(id).await.context("revoking the key")? {
                bail!("no key {id} that is not revoked already");
            }
            eprintln!("key {id} revoked: it opens nothing from now on");
        }
        KeysCommand::Limit { tenant, rate, .. } => {
            let rate = match rate.as_str() {
                "default" => None,
                text => Some(text.parse::<RateLimit>().map_err(anyhow::Error::msg)?.to_string()),
            };
            if !store.set_tenant_rate_limit(&tenant, rate.as_deref()).await.context("setting the rate")? {
                bail!("no tenant named `{tenant}`");
            }
            eprintln!("tenant {tenant}: {}", rate.as_deref().unwrap_or("the server's default rate"));
        }
    }
    store.close().await;
    Ok(())
}
