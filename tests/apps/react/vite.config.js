export default {
  base: "./", // the build is served from a subfolder
  build: { target: "es2022" }, // main.jsx awaits the log at top level
};
