import Foundation
import PeerwayCheckpoint
import PeerwayIndex

/// The management API's OpenAPI 3.1 document, served at `GET /openapi.json`: every route, its
/// parameters, bodies, answers and errors. Built in code from the same names the routes use; a
/// test checks that its operations are exactly the router's routes.
enum IndexAPIOpenAPI {
    /// The document as JSON (sorted keys), built once.
    static let document: [UInt8] = {
        let data = try! JSONSerialization.data(withJSONObject: build(), options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        return Array(data)
    }()

    typealias Object = [String: Any]

    static func build() -> Object {
        [
            "openapi": "3.1.0",
            "info": [
                "title": "Peerway INDEX management API",
                "version": "1.0.0",
                "description": """
                Users, virtual networks, memberships and invitations of a Peerway INDEX, for management and \
                support systems. Every route but this document and the dashboard's login form needs `Authorization: Bearer \
                TOKEN`, the admin token (`DATA_DIR/admin-token` of the supernode); the dashboard's take its session cookie too. Every call acts as the administrator. Users and \
                networks are named by name in paths and bodies; ids are strings (`u12`, `n3`); dates are ISO 8601 \
                UTC with milliseconds; metadata follows the CHECKPOINT's rules (16 entries, keys of 1-32 bytes of \
                a-z 0-9 _ . -, values up to 128 bytes, 512 bytes in all). Listings are paged: pass a page's `next` \
                back as `after`. Request bodies are JSON objects of at most \(IndexAPILimits.maximumBodyBytes) bytes \
                whose unknown fields are refused, as are fields given as null. Errors are `{"error": {"code", "message"}}`; \
                a method a path does not list is answered 405 `method_not_allowed` with `Allow`. The schemas declare \
                every limit the server enforces; two that JSON Schema cannot state are extension keywords: \
                `x-maxBytes` (UTF-8 bytes of a string) and `x-maxTotalBytes` (bytes of a metadata object's keys and values).
                """,
            ] as Object,
            "servers": [["url": "http://127.0.0.1:\(IndexAPILimits.defaultPort)"]],
            "security": [["bearer": [String]()]],
            "paths": paths().merging(reportPaths()) { a, _ in a }.merging(dashboardPaths()) { a, _ in a },
            "components": components(),
        ]
    }

    // MARK: Paths

    static func paths() -> Object {
        let user = parameter("name", "path", "A username.", schema: IndexAPIContract.username)
        let network = parameter("name", "path", "A network name.", schema: IndexAPIContract.networkName)
        let member = parameter("user", "path", "A member's username.", schema: IndexAPIContract.username)
        let listing = [ref("parameters", "after"), ref("parameters", "limit")]
        let shortListing = [ref("parameters", "after"), ref("parameters", "shortLimit")]
        let membershipListing = [ref("parameters", "membershipAfter"), ref("parameters", "limit")]
        let searchable = [ref("parameters", "q")] + listing
        return [
            "/openapi.json": [
                "get": [
                    "operationId": "openAPI", "summary": "This document (no token needed).", "security": [Object](),
                    "responses": ["200": ["description": "The OpenAPI document.", "content": ["application/json": ["schema": ["type": "object"]]]]],
                ] as Object,
            ] as Object,
            "/v1/users": [
                "get": operation("listUsers", "Lists users in id order; with `q`, searches their metadata.",
                                 parameters: searchable, answer: (200, "UserPage"), errors: [400]),
                "post": operation("createUser", "Creates a user.", body: "CreateUser", answer: (201, "User"), errors: [400, 409]),
            ] as Object,
            "/v1/users/{name}": [
                "get": operation("getUser", "One user, with the peers they are logged in from and whether each is online.",
                                 parameters: [user], answer: (200, "User"), errors: [404]),
                "patch": operation("updateUser", "Changes metadata (a null value removes the key) and/or the password.",
                                   parameters: [user], body: "UpdateUser", answer: (200, "User"), errors: [400, 404, 409]),
                "delete": operation("deleteUser", "Deletes the user with their sessions, memberships and invitations (refused, 403 `owns_networks`, while they own a network).",
                                    parameters: [user], answer: (204, nil), errors: [403, 404]),
            ] as Object,
            "/v1/users/{name}/networks": [
                "get": operation("listUserNetworks", "The user's memberships, in network id order.",
                                 parameters: [user] + shortListing, answer: (200, "MembershipPage"), errors: [400, 404]),
            ] as Object,
            "/v1/users/{name}/invitations": [
                "get": operation("listUserInvitations", "The user's pending invitations.",
                                 parameters: [user], answer: (200, "InvitationList"), errors: [404]),
            ] as Object,
            "/v1/networks": [
                "get": operation("listNetworks", "Lists networks in id order; with `q`, searches their metadata.",
                                 parameters: searchable, answer: (200, "NetworkPage"), errors: [400]),
                "post": operation("createNetwork", "Creates a network; its owner becomes its first member.",
                                  body: "CreateNetwork", answer: (201, "Network"), errors: [400, 404, 409, 422]),
            ] as Object,
            "/v1/networks/{name}": [
                "get": operation("getNetwork", "One network.", parameters: [network], answer: (200, "Network"), errors: [404]),
                "patch": operation("updateNetwork", "Changes access, metadata (null removes a key) and/or the owner (a member; the old owner becomes an admin).",
                                   parameters: [network], body: "UpdateNetwork", answer: (200, "Network"), errors: [400, 404, 409]),
                "delete": operation("deleteNetwork", "Deletes the network with its memberships and invitations.",
                                    parameters: [network], answer: (204, nil), errors: [404]),
            ] as Object,
            "/v1/networks/{name}/members": [
                "get": operation("listMembers", "The network's members, in user id order.",
                                 parameters: [network] + shortListing, answer: (200, "MembershipPage"), errors: [400, 404]),
                "post": operation("addMember", "Adds a user (to an invite-only network through an invitation made for them), then names their role.",
                                  parameters: [network], body: "AddMember", answer: (201, "Membership"), errors: [400, 404, 409, 422]),
            ] as Object,
            "/v1/networks/{name}/members/{user}": [
                "get": operation("getMember", "One membership.", parameters: [network, member], answer: (200, "Membership"), errors: [404]),
                "patch": operation("setMemberRole", "Names the member `member` or `admin`.",
                                   parameters: [network, member], body: "SetRole", answer: (200, "Membership"), errors: [400, 404]),
                "delete": operation("removeMember", "Removes the member (never the owner: 403 `cannot_remove_owner`).",
                                    parameters: [network, member], answer: (204, nil), errors: [403, 404]),
            ] as Object,
            "/v1/networks/{name}/invitations": [
                "get": operation("listInvitations", "The network's pending invitations.",
                                 parameters: [network], answer: (200, "InvitationList"), errors: [404]),
                "post": operation("inviteUser", "Invites a user.", parameters: [network], body: "Invite",
                                  answer: (201, "Invitation"), errors: [400, 404, 409, 422]),
            ] as Object,
            "/v1/networks/{name}/invitations/{user}": [
                "delete": operation("withdrawInvitation", "Withdraws the user's invitation.",
                                    parameters: [network, member], answer: (204, nil), errors: [404]),
            ] as Object,
            "/v1/memberships": [
                "get": operation("listMemberships", "Every membership, in (network, user) order.",
                                 parameters: membershipListing, answer: (200, "MembershipPage"), errors: [400]),
            ] as Object,
        ]
    }

    /// One operation; every one may also answer 401, 413 (with a body), 429 and 503.
    static func operation(_ id: String, _ summary: String, parameters: [Object] = [], body: String? = nil,
                          answer: (status: Int, schema: String?), errors: [Int]) -> Object {
        var responses: Object = [:]
        if let schema = answer.schema {
            responses[String(answer.status)] = ["description": "Done.", "content": ["application/json": ["schema": ref("schemas", schema)]]] as Object
        } else {
            responses[String(answer.status)] = ["description": "Done (no body)."]
        }
        var statuses = Set(errors).union([401, 429, 503])
        if body != nil { statuses.formUnion([400, 413]) }
        for status in statuses { responses[String(status)] = ref("responses", errorResponses[status]!.name) }
        var result: Object = ["operationId": id, "summary": summary, "responses": responses]
        if !parameters.isEmpty { result["parameters"] = parameters }
        if let body {
            result["requestBody"] = ["required": true, "content": ["application/json": ["schema": ref("schemas", body)]]] as Object
        }
        return result
    }

    static func parameter(_ name: String, _ location: String, _ description: String, schema: Object = ["type": "string"]) -> Object {
        ["name": name, "in": location, "required": location == "path", "description": description, "schema": schema]
    }

    static func ref(_ kind: String, _ name: String) -> Object { ["$ref": "#/components/\(kind)/\(name)"] }

    // MARK: Components

    /// The error responses by status: name and meaning.
    static let errorResponses: [Int: (name: String, description: String)] = [
        400: ("BadRequest", "Invalid input: `invalid_json`, `invalid_parameter`, `invalid_username`, `invalid_network_name`, `invalid_password`, `invalid_metadata`, `invalid_query`, `invalid_cursor`, `invalid_page_size`, `invalid_role`."),
        401: ("Unauthorized", "Missing or wrong admin token (`unauthorized`); sent with `WWW-Authenticate: Bearer`."),
        403: ("Forbidden", "An INDEX rule refuses: `owns_networks`, `cannot_remove_owner`, `invite_only`, `owner_cannot_leave`, `not_network_owner`, `not_network_manager`, `not_your_record`, `admin_cannot_manage_admin`, `bad_credentials`."),
        404: ("NotFound", "No such record: `no_such_user`, `no_such_network`, `not_member`, `not_invited`, `not_logged_in`; or no such route (`not_found`)."),
        409: ("Conflict", "Taken or already so: `username_taken`, `network_name_taken`, `already_member`, `already_invited`; or metadata changes that would leave the record over the metadata limits (`metadata_full`)."),
        413: ("BodyTooLarge", "The body is larger than \(IndexAPILimits.maximumBodyBytes) bytes (`body_too_large`)."),
        422: ("LimitReached", "An INDEX limit is reached: `too_many_networks` (\(IndexLimits.maximumNetworksPerUser) per user), `too_many_members` (\(IndexLimits.maximumMembersPerNetwork) per network), `too_many_invitations` (\(IndexLimits.maximumInvitationsPerNetwork) pending per network)."),
        429: ("RateLimited", "Rate limited (`rate_limited`); `Retry-After` says how many seconds to wait."),
        503: ("Unavailable", "The INDEX storage failed (`storage`), is closed (`closed`) or its database does not answer (`unavailable`: try again later)."),
    ]

    static func components() -> Object {
        var responses: Object = [:]
        for (status, response) in errorResponses {
            var entry: Object = ["description": response.description,
                                 "content": ["application/json": ["schema": ref("schemas", "Error")]]]
            if status == 429 {
                entry["headers"] = ["Retry-After": ["description": "Seconds to wait.", "schema": ["type": "integer"]]]
            } else if status == 401 {
                entry["headers"] = ["WWW-Authenticate": ["description": "`Bearer realm=\"peerway-index\"`.", "schema": ["type": "string"]]]
            }
            responses[response.name] = entry
        }
        return [
            "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer", "description": "The admin token (DATA_DIR/admin-token)."]],
            "parameters": [
                "after": ["name": "after", "in": "query", "required": false,
                          "schema": IndexAPIContract.after(parts: IndexAPILimits.listingCursorParts),
                          "description": "The `next` of the previous page (empty or absent: the first page)."] as Object,
                "membershipAfter": ["name": "after", "in": "query", "required": false,
                                    "schema": IndexAPIContract.after(parts: IndexAPILimits.membershipCursorParts),
                                    "description": "The `next` of the previous page (empty or absent: the first page)."] as Object,
                "limit": ["name": "limit", "in": "query", "required": false,
                          "schema": IndexAPIContract.limit(maximum: IndexAPILimits.maximumListPage),
                          "description": "Most items per page. A search (`q`) answers at most \(IndexAPILimits.maximumSearchPage) per page whatever it asks; `next` leads on."] as Object,
                "shortLimit": ["name": "limit", "in": "query", "required": false,
                               "schema": IndexAPIContract.limit(maximum: IndexAPILimits.maximumSearchPage),
                               "description": "Most items per page."] as Object,
                "q": ["name": "q", "in": "query", "required": false, "schema": IndexAPIContract.query,
                      "description": "A metadata query in the CHECKPOINT's language (format `\(IndexAPIContract.queryFormat)`): `key=value`, `!=`, `^=` (prefix), `<` `<=` `>` `>=` (numbers), `key?` (present), `*` (all), AND / OR / NOT, parentheses; at most \(CheckpointQuery.maximumTerms) terms, \(CheckpointQuery.maximumDepth) levels of nesting and \(IndexAPILimits.maximumQueryBytes) bytes. Every OR branch needs a positive term (`* AND NOT a=1`, not `NOT a=1`). Not valid: 400 `invalid_query`."] as Object,
            ] as Object,
            "responses": responses,
            "schemas": schemas().merging(reportSchemas()) { a, _ in a }.merging(dashboardSchemas()) { a, _ in a },
        ]
    }

    static func schemas() -> Object {
        let id: Object = ["type": "string", "description": "A permanent id: `u<number>` (users), `n<number>` (networks)."]
        let date: Object = ["type": "string", "format": "date-time"]
        let nullableName: Object = ["type": ["string", "null"]]
        let username = IndexAPIContract.username
        let metadata = IndexAPIContract.metadata
        let changes = IndexAPIContract.metadataChanges
        let password = IndexAPIContract.password
        let role: Object = ["type": "string", "enum": ["member", "admin", "owner"]]
        let settableRole: Object = ["type": "string", "enum": ["member", "admin"]]
        let access: Object = ["type": "string", "enum": ["open", "invite-only"]]
        func object(_ properties: Object, required: [String], closed: Bool = true) -> Object {
            ["type": "object", "properties": properties, "required": required, "additionalProperties": !closed]
        }
        func described(_ schema: Object, _ description: String) -> Object {
            schema.merging(["description": description]) { _, new in new }
        }
        func page(_ item: String, cursorParts: ClosedRange<Int> = IndexAPILimits.listingCursorParts...IndexAPILimits.listingCursorParts) -> Object {
            object(["items": ["type": "array", "items": ref("schemas", item)],
                    "next": IndexAPIContract.next(parts: cursorParts)], required: ["items"])
        }
        return [
            "Error": object(["error": object(["code": ["type": "string"], "message": ["type": "string"]], required: ["code", "message"])],
                            required: ["error"]),
            "User": object(["id": id, "name": ["type": "string"], "metadata": metadata, "created": date, "updated": date,
                            "sessions": ["type": "array", "items": ref("schemas", "Session"),
                                         "description": "Only on GET /v1/users/{name} (and [] on creation)."]],
                           required: ["id", "name", "metadata", "created", "updated"]),
            "Session": object(["peer": ["type": "string", "description": "PeerID (26 characters of base32)."],
                               "online": ["type": "boolean"], "since": date], required: ["peer", "online", "since"]),
            "Network": object(["id": id, "name": ["type": "string"], "owner": nullableName, "ownerId": id, "access": access,
                               "metadata": metadata, "created": date, "updated": date],
                              required: ["id", "name", "ownerId", "access", "metadata", "created", "updated"]),
            "Membership": object(["network": nullableName, "networkId": id, "user": nullableName, "userId": id, "role": role, "joined": date,
                                  "online": ["type": "boolean",
                                             "description": "Only in a network's member list: logged in from a peer that is online now."]],
                                 required: ["networkId", "userId", "role", "joined"]),
            "Invitation": object(["network": nullableName, "networkId": id, "user": nullableName, "userId": id,
                                  "invitedBy": ["type": "string", "description": "Absent when the administrator invited."], "created": date],
                                 required: ["networkId", "userId", "created"]),
            "UserPage": page("User"),
            "NetworkPage": page("Network"),
            "MembershipPage": page("Membership", cursorParts: IndexAPILimits.listingCursorParts...IndexAPILimits.membershipCursorParts),
            "InvitationList": object(["items": ["type": "array", "items": ref("schemas", "Invitation")]], required: ["items"]),
            "CreateUser": object(["name": username, "password": password, "metadata": metadata], required: ["name", "password"]),
            "UpdateUser": object(["metadata": changes, "password": password], required: []),
            "CreateNetwork": object(["name": IndexAPIContract.networkName, "owner": described(username, "The owner's username."),
                                     "access": access, "metadata": metadata], required: ["name", "owner"]),
            "UpdateNetwork": object(["access": access, "metadata": changes,
                                     "owner": described(username, "Transfer to this member.")], required: []),
            "AddMember": object(["user": username, "role": settableRole], required: ["user"]),
            "SetRole": object(["role": settableRole], required: ["role"]),
            "Invite": object(["user": username], required: ["user"]),
        ]
    }
}
