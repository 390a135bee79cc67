package guard

import (
	"net/http"
	"slices"

	"github.com/oauthgate/oauthgate/caddymodule/oauthjson"
)

// ResourceMetadataPath is where a guard serves its RFC 9728 protected
// resource metadata; every challenge points there.
const ResourceMetadataPath = "/.well-known/oauth-protected-resource"

// ResourceMetadataURL is where the host of r serves the RFC 9728
// document.
func ResourceMetadataURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + ResourceMetadataPath
}

// Resource is what the RFC 9728 document says of a guarded resource.
type Resource struct {
	// ID is the resource identifier: the audience its tokens name.
	ID string
	// Issuer is the authorization server that issues its tokens.
	Issuer string
	// Name is the human-readable name, the guard's realm.
	Name string
	// TokenQuery is set when a token may also come in the query.
	TokenQuery bool
	// DPoPAlgs are the algorithms the guard takes DPoP proofs in.
	DPoPAlgs []string
}

type resourceMetadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	BearerMethods        []string `json:"bearer_methods_supported"`
	ResourceName         string   `json:"resource_name,omitempty"`
	DPoPAlgs             []string `json:"dpop_signing_alg_values_supported,omitempty"` // RFC 9728 §2
}

// ServeResourceMetadata answers r with the RFC 9728 document of res:
// which resource this is and which authorization server issues its
// tokens.
func ServeResourceMetadata(w http.ResponseWriter, r *http.Request, res Resource) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	methods := []string{"header"}
	if res.TokenQuery {
		methods = append(methods, "query")
	}
	oauthjson.Write(w, http.StatusOK, resourceMetadata{
		Resource:             res.ID,
		AuthorizationServers: []string{res.Issuer},
		BearerMethods:        slices.Clip(methods),
		ResourceName:         res.Name,
		DPoPAlgs:             res.DPoPAlgs,
	})
}
