// Command herald runs the Herald event backbone.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "herald: under construction")
	os.Exit(1)
}
