package main

import (
	"context"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// argocdVerdict runs a resource.customizations.health script the way Argo CD does for one
// configured in argocd-cm: only the base, package and table libraries are open, the object is
// the global `obj`, and the script returns a table with `status` and `message`.
func argocdVerdict(script string) verdict {
	return func(obj *unstructured.Unstructured) (string, string, error) {
		state := lua.NewState(lua.Options{SkipOpenLibs: true})
		defer state.Close()
		libs := map[string]lua.LGFunction{
			lua.LoadLibName: lua.OpenPackage,
			lua.BaseLibName: lua.OpenBase,
			lua.TabLibName:  lua.OpenTable,
		}
		for name, open := range libs {
			call := lua.P{Fn: state.NewFunction(open), NRet: 0, Protect: true}
			if err := state.CallByParam(call, lua.LString(name)); err != nil {
				return "", "", fmt.Errorf("failed to open Lua library %s: %w", name, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		state.SetContext(ctx)
		state.SetGlobal("obj", toLua(state, obj.Object))
		if err := state.DoString(script); err != nil {
			return "", "", fmt.Errorf("health script failed: %w", err)
		}
		result, ok := state.Get(-1).(*lua.LTable)
		if !ok {
			return "", "", fmt.Errorf("health script returned %s, not a table", state.Get(-1).Type())
		}
		word := lua.LVAsString(result.RawGetString("status"))
		switch word {
		case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		default:
			return "", "", fmt.Errorf("health script returned the unknown status %q", word)
		}
		return word, lua.LVAsString(result.RawGetString("message")), nil
	}
}

// toLua converts a decoded JSON value into Lua: objects and arrays become tables (arrays
// 1-based), numbers become Lua numbers, null becomes nil.
func toLua(state *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []interface{}:
		table := state.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case map[string]interface{}:
		table := state.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	}
	return lua.LNil
}
