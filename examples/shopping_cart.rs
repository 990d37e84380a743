//! Dynamo's shopping cart, without Dynamo's conflict resolution code: a map of a set of
//! items and per-item quantity counters, edited from two "datacenters" (clients talking
//! to different nodes) at the same time. A remove acts only on what its reader saw, so
//! an item added concurrently elsewhere is never lost, and both sides end up equal.
//!
//! ```sh
//! cargo run --release -- dev --nodes 3
//! cargo run --release --example shopping_cart -- --node 127.0.0.1:7000 --node 127.0.0.1:7002
//! ```

mod common;

use cairn_client::{Options, Quorum};

#[tokio::main]
async fn main() -> Result<(), cairn_client::Error> {
    let args = common::Args::parse();
    let (oslo, lima) = (args.client(0).await?, args.client(1).await?);
    let key = format!("cart:{}", std::process::id());
    let (cart_oslo, cart_lima) = (oslo.map("carts", &key), lima.map("carts", &key));

    // Both datacenters fill the cart.
    cart_oslo
        .update(|m| {
            m.set("items").add("apple");
            m.map("qty", |q| q.counter("apple").increment(2));
        })
        .await?;
    let seen_in_oslo = cart_oslo.get().await?;

    // Concurrently: Oslo removes the apples it saw, while Lima adds a pear and two more
    // apples (Lima has not seen Oslo's remove).
    let (removed, added) = tokio::join!(
        cart_oslo.update_seen(&seen_in_oslo, |m| m.set("items").remove("apple")),
        cart_lima.update(|m| {
            m.set("items").add("pear");
            m.set("items").add("apple");
            m.map("qty", |q| {
                q.counter("pear").increment(1);
                q.counter("apple").increment(2);
            });
        }),
    );
    removed?;
    added?;

    let all = Options::new().r(Quorum::All);
    let (a, b) = (
        cart_oslo.clone().with(all).get().await?,
        cart_lima.clone().with(all).get().await?,
    );
    let items: Vec<String> = a
        .set("items")
        .iter()
        .map(|i| String::from_utf8_lossy(i).into_owned())
        .collect();
    println!("cart {key} as Oslo reads it: items {items:?}");
    println!(
        "cart {key} as Lima reads it: items {:?}",
        b.set("items")
            .iter()
            .map(|i| String::from_utf8_lossy(i).into_owned())
            .collect::<Vec<_>>()
    );
    common::check("both datacenters read the same cart", a == b);
    common::check(
        "Lima's pear was not lost",
        items.contains(&"pear".to_string()),
    );
    common::check(
        "an apple added concurrently with Oslo's remove survives (add wins)",
        items.contains(&"apple".to_string()),
    );
    Ok(())
}
