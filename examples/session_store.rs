//! A session store on last-writer-wins registers: log in on one node, refresh the
//! session on another, read it anywhere, log out. A write that starts after another was
//! acknowledged always wins, whichever node takes it.
//!
//! ```sh
//! cargo run --release -- dev --nodes 3
//! cargo run --release --example session_store -- --node 127.0.0.1:7000 --node 127.0.0.1:7001
//! ```

mod common;

#[tokio::main]
async fn main() -> Result<(), cairn_client::Error> {
    let args = common::Args::parse();
    let sessions = if args.short { 10 } else { 100 };
    let (web, api) = (args.client(0).await?, args.client(1).await?);
    let run = std::process::id();
    let mut in_order = true;
    for s in 0..sessions {
        let id = format!("session:{run}:{s}");
        web.register("sessions", &id)
            .assign(format!("user{s};login"))
            .await?;
        api.register("sessions", &id)
            .assign(format!("user{s};refreshed"))
            .await?;
        let seen = web.register("sessions", &id).get_string().await?;
        in_order &= seen.as_deref() == Some(format!("user{s};refreshed").as_str());
    }
    println!("{sessions} sessions: logged in through one node, refreshed through another");
    common::check(
        "every read after the refresh sees the refresh (later writes win)",
        in_order,
    );
    let id = format!("session:{run}:0");
    web.delete("sessions", &id).await?;
    let gone = api.register("sessions", &id).get().await?.is_none();
    common::check("a logged-out session is gone on every node", gone);
    Ok(())
}
