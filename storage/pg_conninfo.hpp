// The network limits every PostgreSQL connection of Chorus runs with, added to the configured URL.
#pragma once

#include <chrono>
#include <string>

namespace chorus::storage {

/// `url` (a postgresql:// URI or a "key=value ..." conninfo string) with libpq's network limits added,
/// unless the URL sets them itself:
///   connect_timeout   `connect` (libpq rounds anything below 2 s up to 2 s): a server that accepts the
///                     connection but never answers is given up on, instead of blocking its caller forever;
///   tcp_user_timeout  20 s: a statement sent to a server that vanished (its host died, the network was cut;
///                     no reset ever comes) fails then, instead of after the kernel's 15-minute retries;
///   keepalives_*      an idle connection to such a server is found dead within 10 + 3 x 5 s, not 2 hours.
/// A server that is merely slow is not affected: these limits count unacknowledged bytes and silence on
/// idle connections, not the time a statement takes.
std::string with_network_timeouts(std::string url, std::chrono::seconds connect = std::chrono::seconds(5));

}  // namespace chorus::storage
