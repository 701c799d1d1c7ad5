//! Newtype ids. Every id is a UUID, stored in documents and tables as its hyphenated
//! string so that the documents stay readable by any automerge client.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| crate::Error::invalid(stringify!($name), format!("{s:?} is not a uuid")))
            }
        }
    };
}

id_type!(
    /// Identifies one client (customer) and its document.
    ClientId
);
id_type!(
    /// Identifies a team member.
    UserId
);
id_type!(
    /// Identifies a team and its team document.
    TeamId
);
id_type!(
    /// Identifies one device replica.
    DeviceId
);
