// Package route holds the binding matchers of the broker core: the in-memory
// structures that turn a routing key (or a message's headers) into the
// destinations of an exchange's bindings.
//
//   - Topic: AMQP topic rules. Keys and patterns are words separated by '.';
//     in a pattern '*' matches exactly one word and '#' zero or more words,
//     anywhere and any number of times ("a.#.z", "#.#", "*.#.*"). Any other
//     word, including the empty one ("a..b"), matches itself only.
//   - Direct: the routing key equals the binding key.
//   - Fanout: every binding matches.
//   - MatchHeaders: the headers exchange rules (x-match all, any, all-with-x,
//     any-with-x).
//
// Semantics follow RabbitMQ, including its edge cases: the empty routing key
// is zero words, so it is matched by "", "#" and "#.#" but not by "*";
// "a." is the two words "a" and "". A pattern or key longer than MaxKeyLen is
// not valid AMQP (see ValidKey and ValidTopicPattern); callers validate, the
// matchers accept any string.
//
// Concurrency: the types are not safe for concurrent mutation; the broker
// guards them with its own lock. Match, Len and MatchHeaders only read, so
// they may run concurrently from many goroutines under a read lock.
//
// Cost: Match allocates nothing beyond growing the caller's slice. Topic
// walks a trie over words, so its cost grows with the number of trie nodes
// the key reaches, not with the number of bindings. A pattern with several
// '#'s is matched with a per-call memo so that no (node, word) pair is
// explored twice; matching stays polynomial for adversarial patterns.
//
// route is a leaf package: it imports only the standard library.
package route
