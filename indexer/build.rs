//! `sqlx::migrate!` embeds the migration files at compile time but does not tell cargo to
//! rebuild when one is added: without this, a new migration is silently left out of a build.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
