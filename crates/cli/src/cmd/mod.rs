pub mod agent;
pub mod bench;
pub mod check;
pub mod hash_password;
pub mod inventory;
pub mod notify;
pub mod serve;
pub mod validate;
