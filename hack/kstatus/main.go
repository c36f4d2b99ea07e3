// Command kstatus reads Kubernetes objects as JSON on stdin (one object, or a List) and prints,
// for each, the status that kstatus computes, the library Flux and other GitOps tools use to
// judge health: `<name> <Current|InProgress|Failed|Terminating|Unknown> <message>`.
//
// The tests use it to prove that KmsAlias conditions read the way those tools expect.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("failed to read stdin: %w", err)
	}
	doc := &unstructured.Unstructured{}
	if err := doc.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("failed to parse the object: %w", err)
	}
	objects := []unstructured.Unstructured{*doc}
	if doc.IsList() {
		list, err := doc.ToList()
		if err != nil {
			return fmt.Errorf("failed to read the list: %w", err)
		}
		objects = list.Items
	}
	for i := range objects {
		obj := &objects[i]
		result, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("failed to compute the status of %s: %w", obj.GetName(), err)
		}
		fmt.Fprintf(out, "%s %s %s\n", obj.GetName(), result.Status, result.Message)
	}
	return nil
}
