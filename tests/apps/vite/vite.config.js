export default {
  base: "./", // the build is served from a subfolder
};
