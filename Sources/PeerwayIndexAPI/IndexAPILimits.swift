import PeerwayCheckpoint
import PeerwayIndex

/// Every bound the management API enforces, named. The INDEX's own limits (`IndexLimits`: names,
/// passwords, metadata, page sizes, members) apply beneath these and are checked by the store.
public enum IndexAPILimits {
    /// The management API's default port (`peerway supernode --admin-listen 127.0.0.1:7480`).
    public static let defaultPort = 7480
    /// The default listen address: loopback only, since the token is the only credential.
    public static let defaultListen = "127.0.0.1:7480"
    /// Largest request body accepted; larger ones are refused with 413 `body_too_large` before
    /// they are read in full. A user or network (name, password, 16 metadata entries) is < 3 KiB.
    public static let maximumBodyBytes = 64 * 1024
    /// Longest `Authorization` header value looked at; longer ones are refused (401) unread.
    public static let maximumAuthorizationBytes = 1_024
    /// Shortest admin token accepted from an operator (`--admin-token`, `PEERWAY_ADMIN_TOKEN`):
    /// 16 bytes of text, so that a token cannot be guessed by trying.
    public static let minimumTokenBytes = 16
    /// Longest admin token accepted (it travels in every request's header).
    public static let maximumTokenBytes = 512
    /// Random bytes in a generated admin token (encoded as 43 characters of base64url).
    public static let generatedTokenBytes = 32
    /// Longest `q` search query, in bytes: the query language's own limit
    /// (`CheckpointQuery.maximumBytes`), declared as `maxLength` in the OpenAPI document.
    public static let maximumQueryBytes = CheckpointQuery.maximumBytes
    /// Most decimal digits in one part of a page cursor (`after`, `next`): 18 digits always fit
    /// an `Int64`, so every cursor the pattern admits is one the server takes.
    public static let maximumCursorDigits = 18
    /// Parts of a page cursor (separated by `.`) of `/v1/memberships`: network id and user id.
    public static let membershipCursorParts = 2
    /// Parts of the page cursor of every other listing: one id.
    public static let listingCursorParts = 1
    /// Fewest characters (Unicode code points, as JSON Schema's `minLength` counts) in a password
    /// the API takes; at least as many bytes as `IndexLimits.passwordBytes` asks for.
    public static let minimumPasswordCharacters = IndexLimits.passwordBytes.lowerBound
    /// Items on a page when `limit` is not given (listings and searches alike).
    public static let defaultPageSize = 20
    /// Most items on a listing page (`GET /v1/users`, `/v1/networks`, `/v1/memberships` without `q`).
    public static let maximumListPage = IndexLimits.maximumListPage
    /// Most items on a search page (`?q=`) and on members and networks-of-a-user listings. A search
    /// of users or networks may ask for up to `maximumListPage`; its page then holds at most this
    /// many items (and `next` leads on).
    public static let maximumSearchPage = IndexLimits.maximumSearchPage
}
